"""Page-number pagination whose `page` and `page_size` are what the schema says."""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

MAX_PAGE_SIZE = 100


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's, except that `?page=` or `?page=x` is refused (400) rather than read as page 1.

    `?page_size=` (1 to 100, default 50) is refused outside its bounds rather than clamped or
    ignored, as the schema says. A page past the last one is still 404 `not_found`.
    """

    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int | None:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and not (
            raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_PAGE_SIZE
        ):
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"A page size from 1 to {MAX_PAGE_SIZE} is required."
                    ]
                }
            )
        return super().get_page_size(request)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            raise ValidationError({self.page_query_param: ["A page number from 1 is required."]})
        return super().get_page_number(request, paginator)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}
        return parameters
