"""`/api/logs/`: the server log files that staff may follow live on `/ws/`, with their sizes."""

from __future__ import annotations

import dataclasses

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.logs.selectors import log_file_list

from .errors import ErrorCode
from .schema import error_response


class LogFileSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The name the file is configured under")
    channel = serializers.CharField(help_text="Subscribe to it on /ws/ for its lines, live")
    size = serializers.IntegerField(
        allow_null=True, help_text="Bytes in the file now; null while it does not exist"
    )


class LogFileListView(APIView):
    """The configured log files (`SWITCHBOARD_TAIL_FILES`), for staff only."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="logs_list",
        summary="List the server logs (staff)",
        description=(
            "The log files this server offers (`SWITCHBOARD_TAIL_FILES`), by name, with their "
            "sizes. Subscribe to a `channel` on `/ws/` to get the lines appended to it; a "
            "line's `offset` there is a byte offset like `size` here. Staff only: another "
            "signed-in user gets 403 `permission_denied`."
        ),
        tags=["logs"],
        responses={
            200: LogFileSerializer(many=True),
            403: error_response(ErrorCode.PERMISSION_DENIED),
        },
        examples=[
            OpenApiExample(
                "Worker log",
                response_only=True,
                # One item: drf-spectacular shows it in a list, as the response is one.
                value={"name": "worker", "channel": "log:worker", "size": 48213},
            )
        ],
    )
    def get(self, request: Request) -> Response:
        files = log_file_list(viewer=request.user)
        return Response(LogFileSerializer([dataclasses.asdict(f) for f in files], many=True).data)
