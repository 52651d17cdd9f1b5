"""The OpenAPI schema's view of the API's errors (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS).

drf-spectacular documents what a view returns when all goes well, and only the errors a
view declares. Every operation can also answer with the errors the API's dialect gives
everywhere (config/api/errors.py), so this schema class adds them to each operation, with
the bodies they have:

| Status | When                                                           | Body              |
|--------|----------------------------------------------------------------|-------------------|
| 400    | the operation takes a body or query parameters, or refuses     | `ValidationError` |
|        | unknown ones (the ledger's views)                              |                   |
| 401    | operations that authenticate (no credentials, or bad ones),    | `Error`           |
|        | and the token endpoints (a wrong password or refresh token)    |                   |
| 403    | operations that authenticate or check permissions              | `Error`           |
| 404    | operations on an object (a path parameter), and those that     | `Error`           |
|        | take `?format=` (DRF's answer to a format it cannot render)    |                   |
| 409    | the operations that declare one (their own description)        | `Error`           |
| 429    | throttled operations, with Retry-After                         | `Error`           |

An error an operation declares itself keeps its description and gets the body if it has
none.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry, ResolvedComponent
from rest_framework_simplejwt.views import TokenViewBase

ERROR = ResolvedComponent(
    name="Error",
    type=ResolvedComponent.SCHEMA,
    object="Error",
    schema={
        "type": "object",
        "description": "An error: `detail` says what went wrong. A conflict (409) may carry "
        "more fields, such as the ledger's `order_id` or `fields`.",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
        "additionalProperties": {},
    },
)
VALIDATION_ERROR = ResolvedComponent(
    name="ValidationError",
    type=ResolvedComponent.SCHEMA,
    object="ValidationError",
    schema={
        "type": "object",
        "description": "Each refused field or query parameter, with its messages (a nested "
        'field nests: `{"parameters": {"fast": ["..."]}}`); `detail` when no field is to '
        "blame, such as a body that is not JSON.",
        "additionalProperties": {},
    },
)

DESCRIPTIONS = {
    "400": "The request was refused: each field or parameter at fault with its messages.",
    "401": "No valid credentials: a missing, expired or invalid token (or no session), or, "
    "for the token endpoints, a wrong username, password or refresh token.",
    "403": "Not allowed: the caller may not do this, or a session's request came without "
    "its CSRF token.",
    "404": "No such object, or one the caller may not see.",
    "409": "A conflict with the current state.",
    "429": "Too many requests: retry after the number of seconds in Retry-After.",
}
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before trying again.",
    }
}


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with the error responses of the API's dialect."""

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: ComponentRegistry,
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        registry.register_on_missing(ERROR)
        registry.register_on_missing(VALIDATION_ERROR)
        responses: dict[str, Any] = operation.setdefault("responses", {})
        for code in self._error_codes(operation):
            response = responses.setdefault(code, {"description": DESCRIPTIONS[code]})
            if not response.get("content"):
                body = VALIDATION_ERROR if code == "400" else ERROR
                response["content"] = {"application/json": {"schema": body.ref}}
            if code == "429":
                response.setdefault("headers", RETRY_AFTER)
        return operation

    def _error_codes(self, operation: dict[str, Any]) -> list[str]:
        view = self.view
        parameters = operation.get("parameters", [])
        codes = []
        # Without an authenticator DRF refuses with a 403, never a 401; simplejwt's token
        # views have none, but answer bad credentials with a 401 themselves.
        if view.authentication_classes or isinstance(view, TokenViewBase):
            codes.append("401")
        takes_input = "requestBody" in operation or any(p["in"] == "query" for p in parameters)
        # The ledger's views refuse any query parameter they do not know, on every GET.
        strict = self.method == "GET" and hasattr(view, "always_allowed")
        if takes_input or strict:
            codes.append("400")
        if view.authentication_classes or view.permission_classes:
            codes.append("403")
        if any(
            p["in"] == "path" or (p["in"], p["name"]) == ("query", "format") for p in parameters
        ):
            codes.append("404")
        if "409" in operation.get("responses", {}):
            codes.append("409")
        if view.throttle_classes:
            codes.append("429")
        return sorted(codes)
