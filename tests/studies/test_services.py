"""Running studies through the services the workers call, with Celery replaced by a queue."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from backtests.services import BacktestConflict
from persistence.models import CachedResult
from persistence.services import cache_load
from studies import services
from studies.models import Study, StudyFold, StudyTrial, TrialState
from studies.services import driver, sampling
from studies.services import trials as trial_services
from tests.studies.conftest import T0, submit

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_tpe_study_runs_every_trial_and_keeps_the_best(queue, study_strategy) -> None:
    study = queue.run(submit(study_strategy, n_trials=10))
    assert study.status == "succeeded", study.error
    trials = list(StudyTrial.objects.filter(study=study))
    assert len(trials) == study.trials_done == study.trials_total == 10
    assert {t.number for t in trials} == set(range(10))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.values[0])
    assert study.best_values == best.values
    assert study.best_parameters == {**study.parameters, **best.params}
    assert all(t.duration_seconds is not None for t in complete)
    # A trial TPE asked again is answered from the cache when it is claimed, by no worker.
    assert all(t.worker == "test-worker" for t in complete if not t.cache_hit)
    overfitting = study.summary["overfitting"]
    assert 0 <= overfitting["deflated_sharpe_ratio"]["value"] <= 1
    assert overfitting["deflated_sharpe_ratio"]["n_trials"] == len(complete)
    assert 0 <= overfitting["probability_of_backtest_overfitting"]["value"] <= 1
    assert set(study.summary["importance"]) <= {"fast", "slow"}


def test_an_identical_study_is_answered_from_the_cache(queue, study_strategy) -> None:
    first = queue.run(submit(study_strategy, n_trials=8))
    second = submit(study_strategy, n_trials=8)
    services.study_launch(study_id=second.pk, task_id=second.celery_task_id)
    assert queue.batches == []  # nothing to compute
    second.refresh_from_db()
    assert second.status == "succeeded"
    assert second.trials_cached == second.trials_done == 8
    assert StudyFold.objects.get(study=second).cache_hit
    assert second.best_parameters == first.best_parameters
    assert second.summary["result_key"] == first.summary["result_key"]


def test_a_repeated_trial_is_a_cache_hit(queue, study_strategy) -> None:
    space = {"fast": {"choices": [3, 5]}, "slow": {"choices": [20, 30]}}
    queue.run(submit(study_strategy, sampler="grid", search_space=space, seed=1))
    # Another seed is another study (another fold key), but the same four backtests.
    again = submit(study_strategy, sampler="grid", search_space=space, seed=2)
    services.study_launch(study_id=again.pk, task_id=again.celery_task_id)
    assert queue.batches == []
    again.refresh_from_db()
    assert again.status == "succeeded"
    trials = StudyTrial.objects.filter(study=again)
    assert trials.count() == 4 and all(t.cache_hit for t in trials)
    assert not StudyFold.objects.get(study=again).cache_hit
    assert CachedResult.objects.filter(kind="study_trial").count() == 4


def test_a_point_computed_here_is_answered_again_without_reading_the_cache(
    queue, study_strategy, monkeypatch
) -> None:
    space = {"fast": {"choices": [3, 5]}, "slow": {"choices": [20, 30]}}
    first = queue.run(submit(study_strategy, sampler="grid", search_space=space, seed=1))
    assert all(t.engine_seconds and t.engine_seconds > 0 for t in first.trials.all())
    stored = {
        t.params_hash: json.loads(
            cache_load(entry=CachedResult.objects.get(params_hash=t.params_hash))
        )["metrics"]
        for t in first.trials.all()
    }

    def no_read(**_: object) -> None:
        raise AssertionError("the cache was read")

    monkeypatch.setattr(trial_services, "cache_peek_content", no_read)
    # Another objective, which the first study's rows do not keep: what is remembered is
    # every metric of the backtest.
    again = submit(
        study_strategy,
        sampler="grid",
        search_space=space,
        seed=2,
        objectives=[{"metric": "max_consecutive_losses", "direction": "minimize"}],
    )
    services.study_launch(study_id=again.pk, task_id=again.celery_task_id)
    again.refresh_from_db()
    assert again.status == "succeeded", again.error
    trials = list(again.trials.all())
    assert len(trials) == 4
    for trial in trials:
        assert trial.cache_hit and trial.engine_seconds is None
        assert trial.values == [stored[trial.params_hash]["max_consecutive_losses"]]


def test_asks_within_one_claim_see_the_trials_answered_before_them(
    queue, study_strategy, monkeypatch
) -> None:
    # Many points break the kind's rules (fast >= slow) and are answered as they are
    # claimed; the asks after them in the same transaction skip re-reading the rows, and
    # must ask what they would have asked had they read them.
    space = {"fast": {"low": 2, "high": 30}, "slow": {"low": 12, "high": 40, "step": 4}}

    def params(study: Study) -> list[tuple[str, dict[str, object]]]:
        rows = StudyTrial.objects.filter(study=study).order_by("slot")
        return [(t.state, t.params) for t in rows]

    quick = queue.run(submit(study_strategy, n_trials=24, search_space=space, use_cache=False))
    real = driver.trial_ask
    monkeypatch.setattr(driver, "trial_ask", lambda *a, refresh=True: real(*a, refresh=True))
    monkeypatch.setattr(sampling._History, "current", lambda self, fold: False)
    reread = queue.run(submit(study_strategy, n_trials=24, search_space=space, use_cache=False))
    assert any(state == TrialState.INFEASIBLE for state, _ in params(quick)[10:])
    assert params(quick) == params(reread)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_an_ask_reads_the_rows_only_when_another_process_wrote_them(
    queue, study_strategy, monkeypatch, parallelism
) -> None:
    # One process, one runner after another: every trial was recorded and claimed by this
    # process, whose history knows them. Another process's record is seen in the counters.
    reads: list[int] = []
    real = sampling._History.refresh
    monkeypatch.setattr(sampling._History, "refresh", lambda self: reads.append(1) or real(self))
    study = queue.run(submit(study_strategy, n_trials=12, parallelism=parallelism))
    assert study.status == "succeeded", study.error
    assert len(reads) == 1  # the history's first ask


def test_an_ask_reads_the_rows_again_after_another_process_recorded_one(
    queue, study_strategy, monkeypatch
) -> None:
    reads: list[int] = []
    real = sampling._History.refresh
    monkeypatch.setattr(sampling._History, "refresh", lambda self: reads.append(1) or real(self))
    study = submit(study_strategy, n_trials=12, parallelism=2)
    services.study_launch(study_id=study.pk, task_id=study.celery_task_id)
    assert len(reads) == 1
    # Another process records the second trial claimed (trial_finish: its own runner's
    # path), which this process's history does not hear of.
    second = StudyTrial.objects.get(study=study, slot=1)
    trial_services.trial_finish(
        study_id=study.pk,
        trial_id=second.pk,
        outcome=trial_services.TrialOutcome(TrialState.FAILED, error="elsewhere"),
        expect=lambda row: True,
    )
    queue.drain()
    study.refresh_from_db()
    assert study.status == "succeeded", study.error
    assert len(reads) == 2
    # What it asked after reading them again saw the failure as a failed trial.
    history = sampling._histories[sampling._history_key(second.fold)]
    memory_trial = history.memory._storage.get_trial(history.rows[second.pk][0])
    assert memory_trial.state.name == "FAIL"


def test_a_failed_trial_is_recorded_and_the_study_goes_on(
    queue, study_strategy, monkeypatch
) -> None:
    real = trial_services.window_evaluate

    def flaky(candles, kind, params, *args, **kwargs):  # type: ignore[no-untyped-def]
        if params["fast"] == 3:
            raise RuntimeError("the engine fell over")
        return real(candles, kind, params, *args, **kwargs)

    monkeypatch.setattr(trial_services, "window_evaluate", flaky)
    space = {"fast": {"choices": [3, 5, 8]}, "slow": {"choices": [20, 30]}}
    study = queue.run(submit(study_strategy, sampler="grid", search_space=space))
    assert study.status == "succeeded", study.error
    failed = StudyTrial.objects.filter(study=study, state=TrialState.FAILED)
    assert failed.count() == 2 == study.trials_failed
    assert all("the engine fell over" in t.error for t in failed)
    assert StudyTrial.objects.filter(study=study, state=TrialState.COMPLETE).count() == 4
    assert study.best_parameters["fast"] != 3


def test_parameters_breaking_the_kinds_rules_are_infeasible_not_errors(
    queue, study_strategy
) -> None:
    space = {"fast": {"choices": [10, 25]}, "slow": {"choices": [20]}}
    study = queue.run(submit(study_strategy, sampler="grid", search_space=space))
    assert study.status == "succeeded"
    infeasible = StudyTrial.objects.get(study=study, state=TrialState.INFEASIBLE)
    assert infeasible.params == {"fast": 25, "slow": 20}
    assert "fast" in infeasible.error and "less than slow" in infeasible.error
    assert study.best_parameters == {"fast": 10, "slow": 20}


def test_constraints_decide_what_may_be_chosen(queue, study_strategy) -> None:
    space = {"fast": {"choices": [3, 5]}, "slow": {"choices": [20, 30]}}
    study = queue.run(submit(study_strategy, sampler="grid", search_space=space, min_trades=10_000))
    assert study.status == "succeeded"
    trials = StudyTrial.objects.filter(study=study)
    assert all(t.feasible is False for t in trials)
    assert all(t.constraint_values["num_trades >= 10000"] > 0 for t in trials)
    assert study.best_parameters is None
    fold = StudyFold.objects.get(study=study)
    assert "No trial was complete and feasible" in fold.error


def test_a_multi_objective_study_has_a_pareto_front(queue, study_strategy) -> None:
    study = queue.run(
        submit(
            study_strategy,
            sampler="nsga2",
            n_trials=12,
            objectives=[
                {"metric": "sharpe", "direction": "maximize"},
                {"metric": "max_drawdown_pct", "direction": "maximize"},
            ],
        )
    )
    assert study.status == "succeeded", study.error
    front = study.summary["pareto_front"]
    assert front
    complete = StudyTrial.objects.filter(study=study, state=TrialState.COMPLETE)
    for point in front:
        # Nothing on the front is dominated by any trial.
        for other in complete:
            assert not (
                other.values[0] >= point["values"][0]
                and other.values[1] >= point["values"][1]
                and other.values != point["values"]
            )


def test_cancel_stops_the_study_and_drops_the_trials_not_run(queue, study_strategy) -> None:
    study = submit(study_strategy, n_trials=10, parallelism=3)
    services.study_launch(study_id=study.pk, task_id=study.celery_task_id)
    queue.drain(limit=1)
    services.study_cancel(study=Study.objects.get(pk=study.pk))
    done_before = StudyTrial.objects.filter(study=study, state=TrialState.COMPLETE).count()
    queue.drain()
    study.refresh_from_db()
    assert study.status == "cancelled"
    assert StudyTrial.objects.filter(study=study, state=TrialState.COMPLETE).count() == done_before
    assert StudyTrial.objects.filter(study=study, state=TrialState.CANCELLED).exists()
    assert not StudyTrial.objects.filter(
        study=study, state__in=["asked", "queued", "running"]
    ).exists()
    with pytest.raises(BacktestConflict):
        services.study_cancel(study=study)


def test_a_lost_worker_loses_its_running_trial_and_the_study_finishes(
    queue, study_strategy, settings
) -> None:
    study = submit(study_strategy, n_trials=6)
    services.study_launch(study_id=study.pk, task_id=study.celery_task_id)
    lost = queue.batches.pop(0)
    # A worker took the batch and died: its trial is running with a heartbeat gone cold.
    trial_services.trial_start(
        study_id=study.pk, trial_id=lost["trial_ids"][0], task_id=lost["task_id"], worker="w1"
    )
    StudyTrial.objects.filter(pk__in=lost["trial_ids"]).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.STUDY_STALE_AFTER_SECONDS + 5)
    )
    queue.drain()
    services.study_watch(study_id=study.pk)  # the watch a stale period later
    queue.drain()
    study.refresh_from_db()
    assert study.status == "succeeded", study.error
    failed = StudyTrial.objects.get(study=study, state=TrialState.FAILED)
    assert failed.pk == lost["trial_ids"][0] and "worker" in failed.error
    assert study.trials_done == 6 and study.trials_failed == 1
    # The lost batch's message, redelivered much later, finds nothing of its own to run.
    services.trials_execute(
        study_id=study.pk, worker="late", **{k: lost[k] for k in ("trial_ids", "task_id")}
    )
    assert StudyTrial.objects.get(pk=failed.pk).state == TrialState.FAILED


def test_a_walk_forward_tests_each_folds_choice_out_of_sample(queue, study_strategy) -> None:
    study = queue.run(
        submit(
            study_strategy,
            sampler="grid",
            search_space={"fast": {"choices": [3, 5, 8]}, "slow": {"choices": [20, 30]}},
            walk_forward={"mode": "rolling", "in_sample": 200, "out_of_sample": 100},
        )
    )
    assert study.status == "succeeded", study.error
    folds = list(StudyFold.objects.filter(study=study, role="fold").order_by("index"))
    assert [(f.is_first_bar, f.is_end_bar, f.oos_end_bar) for f in folds] == [
        (0, 200, 300),
        (100, 300, 400),
        (200, 400, 500),
        (300, 500, 600),
    ]
    assert study.folds_done == study.folds_total == 4
    assert study.trials_total == 6 * 5
    for fold in folds:
        assert fold.chosen_parameters and fold.oos_metrics["bars"] == 100
        assert fold.is_metrics["num_trades"] is not None
        assert fold.oos_start == fold.is_end
    summary = study.summary["walk_forward"]
    assert summary["folds"] == 4 and summary["oos_metrics"]["bars"] == 400
    assert len(summary["efficiency"]["per_fold"]) == 4
    assert set(summary["parameter_stability"]) == {"fast", "slow"}
    assert summary["whole_period"]["parameters"] == study.summary["whole_period_best"]["parameters"]
    assert study.best_parameters == folds[-1].chosen_parameters
    from studies.selectors import study_curves

    curves = study_curves(study=study, max_points=10_000)
    assert len(curves["stitched_oos"]["ts"]) == 400 == len(curves["whole_period"]["ts"])
    assert curves["stitched_oos"]["equity"][-1] == pytest.approx(
        summary["oos_metrics"]["final_equity"]
    )


def test_a_walk_forward_with_one_more_fold_computes_only_that_fold(queue, study_strategy) -> None:
    arguments = {
        "sampler": "grid",
        "search_space": {"fast": {"choices": [3, 5]}, "slow": {"choices": [20, 30]}},
        "walk_forward": {"mode": "anchored", "in_sample": 200, "out_of_sample": 100},
        "compare_whole_period": False,
    }
    first = queue.run(submit(study_strategy, end=T0 + timedelta(hours=500), **arguments))
    assert first.folds_total == 3
    again = submit(study_strategy, **arguments)
    services.study_launch(study_id=again.pk, task_id=again.celery_task_id)
    computed = [
        StudyTrial.objects.get(pk=trial_id).fold.index
        for batch in queue.batches
        for trial_id in batch["trial_ids"]
    ]
    queue.drain()
    again.refresh_from_db()
    assert again.status == "succeeded" and again.folds_total == 4
    folds = StudyFold.objects.filter(study=again).order_by("index")
    assert [f.cache_hit for f in folds] == [True, True, True, False]
    assert set(computed) == {3}
    old = StudyFold.objects.filter(study=first).order_by("index")
    assert [f.chosen_parameters for f in folds][:3] == [f.chosen_parameters for f in old]
