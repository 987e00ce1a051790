"""`/api/schema/asyncapi/`: the AsyncAPI document of the sockets, as YAML (or `?format=json`)."""

from __future__ import annotations

import functools
import json

from django.http import HttpRequest, HttpResponse
from django.views import View

from openapi.asyncapi import build, render


@functools.cache
def _document(fmt: str) -> str:
    return json.dumps(build(), indent=2) if fmt == "json" else render()


class AsyncApiView(View):
    """Serves the same document `make schema` commits as `openapi/asyncapi.yaml`."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.GET.get("format") == "json":
            return HttpResponse(_document("json"), content_type="application/json")
        return HttpResponse(_document("yaml"), content_type="application/yaml; charset=utf-8")
