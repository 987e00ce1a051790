"""`manage.py asyncapi [--file PATH]`: write the AsyncAPI document of the sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from openapi.asyncapi import render


class Command(BaseCommand):
    help = "Write the AsyncAPI 3.0 document of /ws/ and /ws/chat/<room>/ (stdout by default)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", help="Write to this file instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        text = render()
        if options["file"]:
            Path(options["file"]).write_text(text)
        else:
            self.stdout.write(text, ending="")
