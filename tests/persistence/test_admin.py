"""The event log is read-only in the admin."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site

from persistence.models import Event

pytestmark = pytest.mark.django_db


def test_event_admin_cannot_add_change_or_delete(rf, staff_user):
    model_admin = site._registry[Event]
    request = rf.get("/")
    request.user = staff_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
