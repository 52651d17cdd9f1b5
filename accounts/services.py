"""Writes to users: accounts made by staff or seeding, and sign-ups."""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.authentication import audit_actor
from accounts.models import User


@transaction.atomic
def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False) -> User:
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    user.set_password(password)
    user.full_clean()
    user.save()
    return user


@transaction.atomic
def user_register(*, username: str, email: str, password: str) -> User:
    """Create the ordinary (never staff) account of someone signing themselves up.

    The username is unique ignoring case, as Django's UserCreationForm has it, so "Alice"
    cannot impersonate "alice". The email is required and unique ignoring case, because a
    password reset finds the account by its address. The password must pass
    AUTH_PASSWORD_VALIDATORS, judged against this user's own username and email. Every
    problem is raised at once, as a ValidationError keyed by field (`username`, `email`,
    `password`), and nothing is written.
    """
    user = User(username=username, email=email)
    errors: dict[str, list[ValidationError]] = {}

    def reject(field: str, error: ValidationError) -> None:
        errors.setdefault(field, []).extend(error.error_list)

    try:
        user.full_clean(exclude=["password"])  # also normalises the username and email
    except ValidationError as exc:
        for field, field_errors in exc.error_dict.items():
            reject(field, ValidationError(field_errors))
    if "username" not in errors and User.objects.filter(username__iexact=user.username).exists():
        reject("username", ValidationError(user.unique_error_message(User, ["username"])))
    if not user.email:
        reject("email", ValidationError("An email address is required.", code="required"))
    elif "email" not in errors and User.objects.filter(email__iexact=user.email).exists():
        reject(
            "email",
            ValidationError("A user with that email address already exists.", code="unique"),
        )
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        reject("password", exc)
    if errors:
        raise ValidationError(errors)

    user.set_password(password)
    # The new user is the actor of their own sign-up in the audit trail; nobody else is
    # logged in to name.
    audit_actor(user)
    try:
        with transaction.atomic():  # a savepoint, so a lost race leaves the outer one usable
            user.save()
    except IntegrityError as exc:
        # Two sign-ups for one username at the same moment: the unique index decides.
        raise ValidationError(
            {"username": [user.unique_error_message(User, ["username"])]}
        ) from exc
    return user
