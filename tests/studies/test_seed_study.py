"""`seed_study` leaves the demo user one finished walk-forward study, once, and nothing of
it when it fails.

The study writes Optuna's tables through a connection of its own, which cannot see into a
test's transaction: these tests use `transactional_db`.
"""

from __future__ import annotations

from io import StringIO

import optuna
import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from studies.management.commands.seed_study import SEED_STUDY_STRATEGY
from studies.models import Study, StudyFold, StudyTrial
from studies.services import driver
from studies.storage import optuna_storage

BARS = 1000


@pytest.fixture
def demo(transactional_db) -> User:  # type: ignore[no-untyped-def]
    call_command("seed_demo", bars=BARS, stdout=StringIO(), stderr=StringIO())
    return User.objects.get(username="demo")


def seed_study(*args: str) -> str:
    out = StringIO()
    call_command("seed_study", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _optuna_names() -> set[str]:
    return {s.study_name for s in optuna.get_all_study_summaries(storage=optuna_storage())}


def test_seed_study_finishes_one_walk_forward_with_folds_and_trials(demo) -> None:
    output = seed_study("--if-empty")

    study = Study.objects.get(owner=demo)
    assert study.status == "succeeded", study.error
    assert study.mode == "walk_forward" and study.strategy.name == SEED_STUDY_STRATEGY
    folds = StudyFold.objects.filter(study=study, role="fold").order_by("index")
    assert folds.count() == study.folds_total == 3
    assert all(fold.status == "succeeded" and fold.chosen_parameters for fold in folds)
    assert all(fold.oos_metrics and "sharpe" in fold.oos_metrics for fold in folds)
    assert StudyFold.objects.filter(study=study, role="whole").count() == 1
    # 16 grid points in each of 3 folds and the whole period.
    assert StudyTrial.objects.filter(study=study).count() == study.trials_done == 64
    assert study.summary["walk_forward"]["folds"] == 3
    assert study.summary["result_key"]
    assert f"/lab/studies/{study.pk}/" in output and "3 folds and 64 trials" in output


def test_seed_study_again_creates_nothing(demo) -> None:
    seed_study()
    studies, trials = list(Study.objects.values_list("pk", flat=True)), StudyTrial.objects.count()

    assert "exists; none seeded" in seed_study()
    assert "already has a study" in seed_study("--if-empty")

    assert list(Study.objects.values_list("pk", flat=True)) == studies
    assert StudyTrial.objects.count() == trials


def test_a_failing_study_leaves_nothing_and_is_reported(demo, monkeypatch) -> None:
    before = _optuna_names()

    def breaks(study):  # type: ignore[no-untyped-def]
        raise RuntimeError("the study broke at the end")

    monkeypatch.setattr(driver, "study_finish_locked", breaks)

    with pytest.raises(CommandError, match="the study broke at the end"):
        seed_study()

    assert not Study.objects.exists()
    assert not StudyFold.objects.exists() and not StudyTrial.objects.exists()
    assert _optuna_names() == before

    # Once it works again, seeding goes through.
    monkeypatch.undo()
    seed_study("--if-empty")
    assert Study.objects.get().status == "succeeded"


def test_without_the_demo_user_nothing_is_seeded(transactional_db) -> None:
    assert "No user 'demo'" in seed_study("--if-empty")
    assert not Study.objects.exists()
