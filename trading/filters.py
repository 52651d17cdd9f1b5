"""FilterSets for the ledger's history lists.

Every filter validates its input: a malformed value is a 400 naming the parameter, never a
filter silently dropped. Repeated parameters (`?symbol=A&symbol=B`) mean "any of".
`start` and `end` take an ISO date or datetime; both ends are inclusive, and a date-only
`end` covers that whole day. Naive datetimes are UTC. A value at or past either end of the
calendar (`end=9999-12-31`, or an offset that takes a datetime beyond year 1 or 9999 once in
UTC) means no bound on that side rather than an error. `strategy` takes the ids of the
strategies the caller may see (`strategies.selectors.strategy_list`): anyone else's id is
refused exactly like an id that does not exist.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import django_filters
from django import forms
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field

from marketdata.models import Instrument
from strategies.models import Strategy
from strategies.selectors import strategy_list
from trading.models import (
    Direction,
    ExitReason,
    OrderStatus,
    OrderType,
    PositionStatus,
    Side,
    TradeStatus,
)


class DateOrDateTimeField(forms.Field):
    default_error_messages = {
        "invalid": "Enter an ISO 8601 date (2024-01-31) or datetime (2024-01-31T12:00:00Z)."
    }

    def to_python(self, value: Any) -> date | datetime | None:
        if value in self.empty_values:
            return None
        text = str(value).strip()
        try:
            # parse_datetime would read a bare date as midnight; a date means the whole day.
            parsed_date = parse_date(text)
            if parsed_date is not None:
                return parsed_date
            parsed_dt = parse_datetime(text)
        except ValueError:
            parsed_dt = None
        if parsed_dt is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        if timezone.is_naive(parsed_dt):
            return timezone.make_aware(parsed_dt, UTC)
        try:
            return parsed_dt.astimezone(UTC)
        except OverflowError:
            # The offset takes it past either end of the calendar: that end is its bound.
            return LAST_INSTANT if parsed_dt.year == datetime.max.year else FIRST_INSTANT


FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# An ISO date or datetime (DateOrDateTimeField), as the schema says it.
DATE_OR_DATETIME = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
}


@extend_schema_field(DATE_OR_DATETIME)
class StartFilter(django_filters.Filter):
    field_class = DateOrDateTimeField

    def filter(self, qs: QuerySet[Any], value: date | datetime | None) -> QuerySet[Any]:
        if value is None:
            return qs
        if not isinstance(value, datetime):
            value = _day_start(value)
        return qs.filter(**{f"{self.field_name}__gte": value})


@extend_schema_field(DATE_OR_DATETIME)
class EndFilter(django_filters.Filter):
    field_class = DateOrDateTimeField

    def filter(self, qs: QuerySet[Any], value: date | datetime | None) -> QuerySet[Any]:
        if value is None:
            return qs
        if isinstance(value, datetime):
            return qs.filter(**{f"{self.field_name}__lte": value})
        if value == date.max:
            return qs  # the calendar's last day: there is no next day to stop before
        return qs.filter(**{f"{self.field_name}__lt": _day_start(value + timedelta(days=1))})


MAX_ID = 2**63 - 1


class _KeysField(django_filters.fields.ModelMultipleChoiceField):
    """Repeated values of the model's `to_field_name` (its id by default), cleaned to the
    matching ids with one query of two columns: Django's field loads every matching
    instance, and the list of a ledger table only needs their ids. An unknown value is a
    400 naming it, with Django's message."""

    def clean(self, value: Any) -> list[int]:
        if not value and not self.required:
            return []  # not Django's empty queryset: the cleaned value is always a list of ids
        return super().clean(value)  # type: ignore[no-any-return]

    def _check_values(self, value: Any) -> list[int]:
        key = self.to_field_name or "pk"
        wanted = {str(v) for v in value}  # a list: Django's clean refused anything else
        for text in wanted:
            self.validate_no_null_characters(text)
        found = {
            str(k): pk
            for k, pk in self.queryset.filter(**{f"{key}__in": wanted}).values_list(key, "pk")
        }
        for text in sorted(wanted):
            if text not in found:
                raise forms.ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": text},
                )
        return sorted(found.values())


class _IdsField(_KeysField):
    """Ids are checked as numbers in the database's range before any query: an id that is
    not a number, or too large for a BIGINT, is a 400 naming it rather than a 500."""

    def _check_values(self, value: Any) -> list[int]:
        for raw in value:
            text = str(raw)
            if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ID):
                # The caller's text goes in as a parameter, never into the message itself:
                # django-filter %-formats every message, so a "%" in it would be a 500.
                raise forms.ValidationError(
                    "%(value)r is not a valid id.", code="invalid_pk_value", params={"value": text}
                )
        return super()._check_values(value)


class KeysFilter(django_filters.ModelMultipleChoiceFilter):
    """Any of the given objects (by symbol, id...), filtered by their ids: no join on the
    history table, and the form's cleaned value is the list of ids."""

    field_class = _KeysField

    def filter(self, qs: QuerySet[Any], value: list[int]) -> QuerySet[Any]:
        if not value:
            return qs
        return qs.filter(**{f"{self.field_name}__in": value})


class IdsFilter(KeysFilter):
    field_class = _IdsField


def _symbols(field_name: str) -> KeysFilter:
    return KeysFilter(
        field_name=field_name,
        to_field_name="symbol",
        queryset=Instrument.objects.all(),
        help_text="Instrument symbol; repeat for several.",
    )


class _VisibleStrategyIdsField(_IdsField):
    """Strategy ids, of the strategies the caller may see: LedgerFilterSet narrows the
    queryset to them for each request."""


class VisibleStrategiesFilter(IdsFilter):
    field_class = _VisibleStrategyIdsField


def _strategies(field_name: str) -> KeysFilter:
    return VisibleStrategiesFilter(
        field_name=field_name,
        # Narrowed per request; with no request, to nothing (LedgerFilterSet.form).
        queryset=Strategy.objects.all(),
        help_text="Strategy id (yours; any for staff); repeat for several.",
    )


def _choices(field_name: str, choices: Any, help_text: str) -> django_filters.MultipleChoiceFilter:
    return django_filters.MultipleChoiceFilter(
        field_name=field_name, choices=choices, distinct=False, help_text=help_text
    )


def _range(field_name: str) -> tuple[StartFilter, EndFilter]:
    return (
        StartFilter(field_name=field_name, help_text=f"{field_name} on or after (ISO date/time)"),
        EndFilter(field_name=field_name, help_text=f"{field_name} on or before (ISO date/time)"),
    )


_FORM_CLASSES: dict[type[django_filters.FilterSet], type[forms.Form]] = {}


class LedgerFilterSet(django_filters.FilterSet):
    """A FilterSet whose form class is made once per FilterSet class, not once per request.

    django-filter makes a new form class, with new fields, for every request; no filter
    here depends on the request, so the first one serves them all. Each form still gets
    its own copies of the fields, as every Django form does.
    """

    def get_form_class(self) -> type[forms.Form]:
        form = _FORM_CLASSES.get(type(self))
        if form is None:
            form = _FORM_CLASSES[type(self)] = super().get_form_class()
        return form

    @property
    def form(self) -> forms.Form:
        built = hasattr(self, "_form")
        form: forms.Form = super().form
        if not built:
            # The shared form class cannot hold a per-caller queryset (django-filter's
            # callable querysets would be evaluated once, for the first caller); each
            # form's own copy of the field is narrowed here instead.
            user = getattr(self.request, "user", None)
            visible = (
                strategy_list(user=user)
                if user is not None and user.is_authenticated
                else Strategy.objects.none()
            )
            for field in form.fields.values():
                if isinstance(field, _VisibleStrategyIdsField):
                    field.queryset = visible
        return form


class OrderFilter(LedgerFilterSet):
    symbol = _symbols("instrument")
    strategy = _strategies("strategy")
    status = _choices("status", OrderStatus.choices, "Order status; repeat for several.")
    side = _choices("side", Side.choices, "buy or sell")
    order_type = _choices("order_type", OrderType.choices, "Order type; repeat for several.")
    client_order_id = django_filters.CharFilter(field_name="client_order_id")
    start, end = _range("created_at")


class FillFilter(LedgerFilterSet):
    symbol = _symbols("order__instrument")
    strategy = _strategies("order__strategy")
    side = _choices("order__side", Side.choices, "buy or sell")
    order = django_filters.NumberFilter(field_name="order_id", min_value=1, max_value=MAX_ID)
    venue_trade_id = django_filters.CharFilter(field_name="venue_trade_id")
    start, end = _range("ts")


class PositionFilter(LedgerFilterSet):
    symbol = _symbols("instrument")
    strategy = _strategies("strategy")
    status = _choices("status", PositionStatus.choices, "open or closed")
    start, end = _range("opened_at")


class TradeFilter(LedgerFilterSet):
    symbol = _symbols("instrument")
    strategy = _strategies("strategy")
    status = _choices("status", TradeStatus.choices, "open or closed")
    side = _choices("direction", Direction.choices, "long or short")
    exit_reason = _choices("exit_reason", ExitReason.choices, "Exit reason; repeat for several.")
    start, end = _range("entry_time")


class EventFilter(LedgerFilterSet):
    stream = django_filters.CharFilter(field_name="stream", help_text="Exact stream name.")
    type = django_filters.CharFilter(field_name="type")
    after = django_filters.NumberFilter(
        field_name="seq",
        lookup_expr="gt",
        min_value=0,
        max_value=MAX_ID,
        help_text="Only events with seq above this.",
    )
    start, end = _range("created_at")


class AuditFilter(LedgerFilterSet):
    model = django_filters.CharFilter(
        method="filter_model",
        help_text="app_label.model, e.g. trading.order",
        validators=[RegexValidator(r"^\w+\.\w+$", "Use app_label.model, e.g. trading.order.")],
    )
    object = django_filters.CharFilter(field_name="object_pk", help_text="The object's id.")
    actor = django_filters.NumberFilter(field_name="actor_id", help_text="The actor's user id.")
    start, end = _range("timestamp")

    def filter_model(self, qs: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        app_label, _, model = value.lower().partition(".")
        return qs.filter(content_type__app_label=app_label, content_type__model=model)
