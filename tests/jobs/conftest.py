"""Fixtures of the job tests: the owner's API client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient


@pytest.fixture
def api(owner: User) -> APIClient:
    """The REST API, signed in as `owner`."""
    client = APIClient()
    client.force_authenticate(owner)
    return client
