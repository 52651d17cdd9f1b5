"""The pagination every list of the API uses (REST_FRAMEWORK's DEFAULT_PAGINATION_CLASS).

It imports no domain code: DRF imports it while its generic views are being defined.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class CappedCursorPagination(CursorPagination):
    """Cursor pages for every list: a deep page costs what the first one does.

    `?limit=` sets the page size: 100 by default, at most 1,000 (more is cut to 1,000); a
    limit that is not a positive integer is a 400 naming `limit`, and a `cursor` that no
    page gave is a 400 naming `cursor`. Pages are `{"next", "previous", "results"}`; follow
    `next` until it is null. The order is the view's ordering filter's (`?ordering=`), else
    the view's `ordering`, else newest id first. Its first field must be unique or nearly so
    (`-created_at, -id`, `id`): the cursor keeps that field's value.
    """

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
    ordering = "-id"

    def decode_cursor(self, request: Request) -> Any:
        # DRF answers a cursor it cannot read with a 404; a malformed parameter is a 400
        # naming it here, as `limit` is.
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:
            raise exceptions.ValidationError({"cursor": [self.invalid_cursor_message]}) from exc

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size < 1:
            raise exceptions.ValidationError({"limit": "Must be a positive integer."})
        return min(size, self.max_page_size)

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        backends = getattr(view, "filter_backends", None) or []
        has_ordering_filter = any(hasattr(backend, "get_ordering") for backend in backends)
        view_ordering = getattr(view, "ordering", None)
        if not has_ordering_filter and view_ordering:
            # Actions without filter backends (a run's trades) still order their own way.
            return (view_ordering,) if isinstance(view_ordering, str) else tuple(view_ordering)
        return super().get_ordering(request, queryset, view)
