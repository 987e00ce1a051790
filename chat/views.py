"""The tutorial's own chat pages, served unchanged: a room picker and a room."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    """The page that asks which chat room to enter."""
    return render(request, "chat/index.html")


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """The page of one chat room; its socket (not this view) validates the name."""
    return render(request, "chat/room.html", {"room_name": room_name})
