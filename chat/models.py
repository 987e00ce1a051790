"""Chat data: a Room is a named place whose messages are numbered by `last_seq`."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

ROOM_SLUG_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Room(models.Model):
    # The slug becomes part of channel-layer group names, which accept only these characters.
    slug = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(ROOM_SLUG_PATTERN, "Use 1-64 letters, digits, _ or -.")],
    )
    title = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug
