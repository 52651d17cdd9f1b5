"""FilterSets for the market-data API."""

from __future__ import annotations

import django_filters

from marketdata.models import Instrument


class InstrumentFilter(django_filters.FilterSet):
    symbol = django_filters.CharFilter(
        field_name="symbol", lookup_expr="iexact", help_text="Exact symbol, any case."
    )
    quote = django_filters.CharFilter(
        field_name="quote", lookup_expr="iexact", help_text="Quote currency, any case."
    )
    is_active = django_filters.BooleanFilter(field_name="is_active")

    class Meta:
        model = Instrument
        fields = ["symbol", "quote", "is_active"]
