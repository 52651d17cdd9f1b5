"""Sign-up over the API: `POST /api/v1/auth/register/`, for bots and scripts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.services import user_register
from accounts.throttling import RegistrationRateThrottle


class RegistrationSerializer(serializers.Serializer):  # type: ignore[type-arg]
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )


class RegisteredUserSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    refresh = serializers.CharField(help_text="A refresh token, as `auth/token/` gives.")
    access = serializers.CharField(help_text="An access token, as `auth/token/` gives.")


class RegistrationOpen(BasePermission):
    message = "Registration is closed."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(settings.REGISTRATION_OPEN)


_field_errors = serializers.ListField(child=serializers.CharField(), required=False)


class RegisterView(APIView):
    # Anonymous by design: a stale bearer token or a session must not turn a sign-up into a
    # 401 or a CSRF failure. With no authenticator, a refusal is a 403, never a 401.
    authentication_classes: list[type] = []
    permission_classes = [RegistrationOpen]
    throttle_classes = [RegistrationRateThrottle]

    @extend_schema(
        summary="Sign up: create an ordinary (non-staff) user and get a JWT pair",
        request=RegistrationSerializer,
        responses={
            201: RegisteredUserSerializer,
            400: OpenApiResponse(
                inline_serializer(
                    "RegistrationErrors",
                    {
                        "username": _field_errors,
                        "email": _field_errors,
                        "password": _field_errors,
                    },
                ),
                description="Per-field errors: a taken username or email, a password the "
                "password validators refuse.",
            ),
            403: OpenApiResponse(description="Registration is closed (REGISTRATION_OPEN)."),
            429: OpenApiResponse(description="Too many sign-up attempts from this client."),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = RegistrationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = user_register(
            username=data["username"], email=data["email"], password=data["password"]
        )
        refresh = RefreshToken.for_user(user)
        body = {
            "id": user.pk,
            "username": user.username,
            "email": user.email,
            "refresh": str(refresh),
            "access": str(refresh.access_token),
        }
        return Response(RegisteredUserSerializer(body).data, status=status.HTTP_201_CREATED)
