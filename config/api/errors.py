"""The API's exception handler (REST_FRAMEWORK's EXCEPTION_HANDLER): domain errors as HTTP
answers, so no view catches them one by one; and the 404 of a URL under `/api/` that no
route matches (config.urls' handler404), as JSON like every other error of the API."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from backtests.services import BacktestConflict, BacktestInputError
from persistence.events import StreamVersionConflict
from strategies.services import StrategyConflict
from trading.services import LedgerConflict


def _conflict(message: str, **extra: Any) -> Response:
    set_rollback()
    return Response({"detail": message, **extra}, status=status.HTTP_409_CONFLICT)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Domain errors to 400s and 409s; everything else to DRF's own handler.

    | Raised                                        | Status | Body                        |
    |-----------------------------------------------|--------|-----------------------------|
    | backtests BacktestInputError                  | 400    | `{field: [messages]}`       |
    | Django ValidationError with fields            | 400    | `{field: [messages]}`       |
    | Django ValidationError without fields         | 400    | `{"detail": [messages]}`    |
    | backtests BacktestConflict                    | 409    | `{"detail": message}`       |
    | trading LedgerConflict (FillRejected too)     | 409    | `{"detail": message, ...}`  |
    | persistence StreamVersionConflict             | 409    | `{"detail": message}`       |
    | strategies StrategyConflict                   | 409    | `{"detail": message}`       |
    | DRF exceptions, Http404, PermissionDenied     | DRF's  | DRF's (`{"detail": ...}`)   |

    Objects the caller may not see are 404s: the views raise NotFound for them.
    """
    if isinstance(exc, LedgerConflict):
        return _conflict(exc.message, **exc.detail)
    if isinstance(exc, BacktestConflict | StreamVersionConflict | StrategyConflict):
        return _conflict(str(exc))
    if isinstance(exc, BacktestInputError):
        exc = exceptions.ValidationError(exc.errors)
    elif isinstance(exc, DjangoValidationError):
        has_fields = hasattr(exc, "error_dict")
        exc = exceptions.ValidationError(
            exc.message_dict if has_fields else {"detail": exc.messages}
        )
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404, for a URL no route matches (such as `/api/v1/backtests/abc/`): under
    `/api/` the body is DRF's, `{"detail": "Not found."}`; elsewhere, Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
