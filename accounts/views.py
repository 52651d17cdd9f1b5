"""The web pages of accounts: sign-up, and a login page that links to it when it is open.

Password reset is Django's own views, wired in `accounts/web_urls.py` with our templates.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from accounts.forms import SignUpForm
from accounts.services import user_register
from accounts.throttling import RegistrationRateThrottle

# The service calls it `password`; the form shows password errors under the confirmation,
# as Django's UserCreationForm does.
_FORM_FIELD = {"password": "password2"}


class LoginView(auth_views.LoginView):
    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "registration_open": _registration_open()}


def _registration_open() -> bool:
    return bool(settings.REGISTRATION_OPEN)


def _put_back(form: SignUpForm, error: ValidationError) -> None:
    """Show the service's per-field errors on the form's fields."""
    for field, messages in error.message_dict.items():
        name = _FORM_FIELD.get(field, field)
        form.add_error(name if name in form.fields else None, messages)


@sensitive_post_parameters("password1", "password2")
@csrf_protect
@never_cache
def signup(request: HttpRequest) -> HttpResponse:
    if not _registration_open():
        return render(request, "registration/signup.html", {"closed": True}, status=403)
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        # The same budget as the API's, per client address: a bot gains nothing by switching.
        if not RegistrationRateThrottle().allow_request(request, None):  # type: ignore[arg-type]
            context = {"form": SignUpForm(), "throttled": True}
            return render(request, "registration/signup.html", context, status=429)
        if form.is_valid():
            try:
                user = user_register(
                    username=form.cleaned_data["username"],
                    email=form.cleaned_data["email"],
                    password=form.cleaned_data["password1"],
                )
            except ValidationError as exc:
                _put_back(form, exc)
            else:
                # Named, because django-axes adds a backend of its own before this one.
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/signup.html", {"form": form})
