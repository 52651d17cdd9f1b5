"""The sign-up form: Django's UserCreationForm with a required email."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm

from accounts.models import User


class SignUpForm(UserCreationForm):  # type: ignore[type-arg]
    """Checks what a person typed; `accounts.services.user_register` decides and writes.

    The form's own checks (matching passwords, the password validators, a free username)
    give the same answers as the service; the service alone knows that an email is taken,
    and its errors are put back on these fields by the view.
    """

    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")
