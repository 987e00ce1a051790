"""Request parsers: JSON only, and never more of it than DATA_UPLOAD_MAX_MEMORY_SIZE."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the body size capped.

    DRF 3.18 hands JSON parsers `request.body`, where Django refuses a `Content-Length` above
    the limit (RequestDataTooBig, answered 413); a stream read directly (other DRF versions,
    other callers) is counted here, so no body over the limit reaches `json.loads`.
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        from .errors import RequestTooLarge  # errors imports DRF's views, which import this

        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None:
            raw = stream.read(limit + 1)
            if len(raw) > limit:
                raise RequestTooLarge()
            stream = io.BytesIO(raw)
        return super().parse(stream, media_type, parser_context)
