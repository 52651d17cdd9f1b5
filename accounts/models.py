"""The custom user model, created from the start so it can grow without a painful swap."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
