"""`manage.py seed_demo`: the demo user and the rooms `lobby` and `random` (idempotent).

The demo user is staff, so that it may follow the server logs (`make run` offers the worker's).
"""

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from chat.services import room_ensure

DEMO_ROOMS = {"lobby": "Lobby", "random": "Random"}


class Command(BaseCommand):
    help = "Create the demo user (staff; password kept in var/demo-password) and the demo rooms."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="demo")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        password_file = settings.VAR_DIR / "demo-password"
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": True}
        )
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        if created or not password_file.exists():
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save()
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password)
            password_file.chmod(0o600)
        else:
            password = password_file.read_text().strip()
        for slug, title in DEMO_ROOMS.items():
            room_ensure(slug=slug, title=title)
        self.stdout.write(f"demo user: {username} / {password}")
        self.stdout.write(f"demo rooms: {', '.join(DEMO_ROOMS)}")
