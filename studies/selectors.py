"""Reads for studies, scoped to what the caller may see: the studies, their folds and trials,
and the curves a finished study saved."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from django.db.models import QuerySet

from accounts.models import User
from backtests.selectors import curve_thin
from persistence.selectors import artifact_for_hash
from persistence.services import artifact_load
from studies.models import FoldRole, Study, StudyFold, StudyTrial

CURVES = ("stitched_oos", "whole_period")
# The artifact a finished study's curves are saved as, under its result key.
EQUITY_ARTIFACT = "study-equity.parquet"


def study_list(*, user: User) -> QuerySet[Study]:
    """Studies `user` may see: their own, or every study for staff."""
    studies = Study.objects.select_related("instrument", "strategy", "owner")
    return studies if user.is_staff else studies.filter(owner=user)


def study_get(*, user: User, study_id: int) -> Study | None:
    return study_list(user=user).filter(pk=study_id).first()


def study_trials(*, study: Study) -> QuerySet[StudyTrial]:
    return StudyTrial.objects.select_related("fold").filter(study=study).order_by("id")


def study_folds(*, study: Study) -> QuerySet[StudyFold]:
    """The walk-forward folds, in order (the whole-period optimisation is on the study)."""
    return StudyFold.objects.filter(study=study, role=FoldRole.FOLD).order_by("index")


def study_stages(*, study: Study) -> QuerySet[StudyFold]:
    """Every optimisation of the study: the folds, then the whole period."""
    return StudyFold.objects.filter(study=study).order_by("role", "index")


def study_curves(*, study: Study, max_points: int) -> dict[str, dict[str, list[Any]]]:
    """The study's curves as {name: {ts, equity}}, each thinned to `max_points`; empty
    arrays until the study has succeeded (or for a curve it does not have)."""
    curves: dict[str, dict[str, list[Any]]] = {name: {"ts": [], "equity": []} for name in CURVES}
    key = (study.summary or {}).get("result_key")
    artifact = artifact_for_hash(params_hash=key, name=EQUITY_ARTIFACT) if key else None
    if artifact is None:
        return curves
    frame = pd.read_parquet(io.BytesIO(artifact_load(artifact=artifact)))
    for name in CURVES:
        if name not in frame.columns:
            continue
        series = frame[name].dropna()
        thinned = curve_thin(series.to_frame(), max_points=max_points)
        curves[name] = {
            "ts": [ts.isoformat() for ts in thinned.index],
            "equity": [float(value) for value in thinned[name]],
        }
    return curves
