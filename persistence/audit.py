"""Audited updates of rows whose old state the caller already holds.

django-auditlog audits an update by reading the row again before saving it, to diff the
old state with the new one: one query per audited row. A service that locked and read the
rows itself holds that old state already: `audited_update` diffs with it instead, then
saves the row with auditlog's receiver held off, so the entry is written once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, TypeVar

from auditlog.context import disable_auditlog
from auditlog.diff import model_instance_diff
from auditlog.models import LogEntry
from django.conf import settings
from django.db.models import DecimalField, Model

M = TypeVar("M", bound=Model)


def audited_update(obj: M, *, old: M, fields: Sequence[str]) -> None:
    """`obj.save(update_fields=fields)`, with the log entry auditlog's receiver would write,
    diffed against `old`: the row as the caller read it, under a lock held since.

    One difference from the receiver, on purpose: decimals are compared (and the entry's
    text made) as the columns will store them. A zero read as 0E-18 and saved as 0 is no
    change, where the receiver, comparing text, records one.
    """
    stored = _as_stored(obj, fields)
    changes = model_instance_diff(
        old,
        stored,
        fields_to_check=fields,
        use_json_for_changes=getattr(settings, "AUDITLOG_STORE_JSON_CHANGES", False),
    )
    if changes:
        LogEntry.objects.log_create(stored, action=LogEntry.Action.UPDATE, changes=changes)
    with disable_auditlog():
        obj.save(update_fields=list(fields))


# Wide enough for any numeric column: quantizing must never fail where saving would not.
_WIDE = Context(prec=1000, rounding=ROUND_HALF_UP)


def _as_stored(obj: M, fields: Sequence[str]) -> M:
    """A copy of `obj` with its decimals at their columns' scales, as it will read back."""
    stored = copy.copy(obj)
    for name in fields:
        field = obj._meta.get_field(name)
        value: Any = getattr(obj, name)
        if isinstance(field, DecimalField) and isinstance(value, Decimal) and value.is_finite():
            places = Decimal(1).scaleb(-(field.decimal_places or 0))
            setattr(stored, name, value.quantize(places, context=_WIDE))
    return stored
