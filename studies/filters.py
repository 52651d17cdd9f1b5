"""FilterSets for studies and their trials."""

from __future__ import annotations

import django_filters

from backtests.models import RunStatus
from studies.models import FoldRole, SamplerName, Study, StudyMode, StudyTrial, TrialState


class StudyFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    mode = django_filters.ChoiceFilter(choices=StudyMode.choices)
    sampler = django_filters.ChoiceFilter(choices=SamplerName.choices)
    kind = django_filters.CharFilter()

    class Meta:
        model = Study
        fields = ["status", "mode", "sampler", "kind"]


class StudyTrialFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=TrialState.choices)
    role = django_filters.ChoiceFilter(
        field_name="fold__role", choices=FoldRole.choices, help_text="fold or whole"
    )
    fold = django_filters.NumberFilter(
        field_name="fold__index", min_value=0, help_text="The fold's index (with role=fold)"
    )
    cache_hit = django_filters.BooleanFilter()

    class Meta:
        model = StudyTrial
        fields = ["state", "role", "fold", "cache_hit"]
