"""Page-number pagination whose `page` and `page_size` are what the schema says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core import paginator
from django.db.models import QuerySet
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.views import APIView

from realtime.kernel.listing import Listing

MAX_PAGE_SIZE = 100
# The largest OFFSET SQLite and PostgreSQL take (a signed 64-bit integer): no row is past it.
MAX_OFFSET = 2**63 - 1


Row = TypeVar("Row")


def page_body(
    view: GenericAPIView,
    rows: Listing[Row] | QuerySet[Any],
    represent: Callable[[list[Row]], list[Any]],
) -> Any:
    """The view's page of `rows` as its paginator answers it: the count, the links, and the
    page's rows as `represent` gives them. Refusals raise (a bad `page` or `page_size`)."""
    page: list[Row] | None = view.paginate_queryset(rows)  # type: ignore[arg-type]  # as a QuerySet
    assert page is not None  # the view has a paginator
    return view.get_paginated_response(represent(page)).data


class Paginator(paginator.Paginator):
    """Django's paginator, except that it reads the page first and counts only if it must.

    Django's counts the rows (a query) before it reads a page. A page shorter than a full one
    is the last, and says how many rows there are: the count is asked for only when the page
    is full. So the last page of a list, and a list that fits on one page, take one query.
    """

    def page(self, number: Any) -> paginator.Page:
        number = int(number)  # `get_page_number` let only whole numbers from 1 through
        bottom = (number - 1) * self.per_page
        if bottom + self.per_page > MAX_OFFSET:  # the database would refuse the offset
            raise paginator.EmptyPage(self.error_messages["no_results"])
        rows = list(self.object_list[bottom : bottom + self.per_page])
        if len(rows) < self.per_page and (rows or number == 1):
            self.__dict__["count"] = bottom + len(rows)  # Django's `count` is a cached_property
        elif not rows:
            raise paginator.EmptyPage(self.error_messages["no_results"])
        return paginator.Page(rows, number, self)


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's, except that `?page=` or `?page=x` is refused (400) rather than read as page 1.

    `?page_size=` (1 to 100, default 50) is refused outside its bounds rather than clamped or
    ignored, as the schema says. A page past the last one is still 404 `not_found`. Rows are
    counted only when the page read is full (`Paginator`).
    """

    django_paginator_class = Paginator
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
