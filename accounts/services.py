"""Writes to users."""

from __future__ import annotations

from django.db import transaction

from accounts.models import User


@transaction.atomic
def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False) -> User:
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.set_password(password)
    user.full_clean()
    user.save()
    return user
