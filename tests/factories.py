"""factory_boy factories for the domain models."""

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from chat.models import Message, Room
from chat.services import Poster, message_post

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj: Any, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            obj.save()


class RoomFactory(factory.django.DjangoModelFactory[Room]):
    class Meta:
        model = Room

    slug = factory.Sequence(lambda n: f"room-{n}")
    title = factory.LazyAttribute(lambda room: room.slug.title())


def poster(user: User | None = None) -> Poster:
    """Who posts in a test that posts directly: the user, or an anonymous local client."""
    return Poster(user=user, address="127.0.0.1")


def say(room: Room, user: User | None, body: str) -> Message:
    """A message posted directly, by the user or an anonymous local client."""
    return message_post(room=room, poster=poster(user), body=body).message
