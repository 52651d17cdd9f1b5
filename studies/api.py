"""REST API for studies: thin views over studies.services and selectors.

Lists are cursor-paginated; domain errors (BacktestInputError, BacktestConflict) become 400s
and 409s in config.api like everywhere else. A study someone else owns is a 404.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from backtests import selectors as backtest_selectors
from backtests.api import ID_PATTERN, RunOverridesMixin
from backtests.services import stored_overrides
from backtests.services.sweeps import RANKABLE_METRICS
from persistence.downloads import XLSX_MIME, CsvRenderer, XlsxRenderer
from strategies.api import VisibleStrategyField
from studies import selectors, services
from studies.filters import StudyFilter, StudyTrialFilter
from studies.models import FoldRole, SamplerName, Study, StudyFold, StudyTrial, TrialState
from studies.services.exports import TABLES
from studies.windows import MODES, ROLLING, parse_length


def _user(request: Request) -> User:
    return cast(User, request.user)


def _download(content: bytes, *, filename: str, mime: str) -> HttpResponse:
    response = HttpResponse(content, content_type=mime)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Request serializers --------------------------------------------------------------


class DimensionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """One searched parameter. Left out, low, high and step are the kind's spec's (its
    bounds and step); `choices` instead lists the values to try."""

    low = serializers.FloatField(required=False)
    high = serializers.FloatField(required=False)
    step = serializers.FloatField(required=False, allow_null=True)
    log = serializers.BooleanField(required=False)
    choices = serializers.ListField(child=serializers.JSONField(), required=False)


class ObjectiveSerializer(serializers.Serializer):  # type: ignore[type-arg]
    metric = serializers.ChoiceField(choices=list(RANKABLE_METRICS))
    direction = serializers.ChoiceField(
        choices=["maximize", "minimize"],
        required=False,
        help_text="Left out: minimize for costs, durations and volatility, else maximize.",
    )


class ConstraintSerializer(serializers.Serializer):  # type: ignore[type-arg]
    metric = serializers.ChoiceField(choices=list(RANKABLE_METRICS))
    min = serializers.FloatField(required=False, allow_null=True)
    max = serializers.FloatField(required=False, allow_null=True)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "description": "A number of bars."},
            {
                "type": "string",
                "pattern": r"^[1-9][0-9]{0,6}[mhdw]$",
                "description": "A duration: minutes, hours, days or weeks, e.g. 30d.",
            },
        ]
    }
)
class WindowLengthField(serializers.Field):  # type: ignore[type-arg]
    def to_internal_value(self, data: Any) -> int | str:
        try:
            parse_length(data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        return cast(int | str, data)

    def to_representation(self, value: Any) -> Any:
        return value


class WalkForwardSerializer(serializers.Serializer):  # type: ignore[type-arg]
    mode = serializers.ChoiceField(
        choices=list(MODES),
        default=ROLLING,
        help_text="anchored: every in-sample window starts at the range's start; rolling: "
        "it moves forward by step.",
    )
    in_sample = WindowLengthField(help_text="Length of each in-sample (optimisation) window.")
    out_of_sample = WindowLengthField(help_text="Length of each out-of-sample (test) window.")
    step = WindowLengthField(
        required=False, help_text="How far each fold moves on; out_of_sample if left out."
    )


class StudySubmitSerializer(RunOverridesMixin):
    strategy = VisibleStrategyField()
    start = serializers.DateTimeField(help_text="First bar's open time (inclusive), UTC.")
    end = serializers.DateTimeField(help_text="End of the range (exclusive), UTC.")
    sampler = serializers.ChoiceField(choices=SamplerName.choices, default=SamplerName.TPE)
    n_trials = serializers.IntegerField(
        default=100,
        min_value=1,
        help_text="Trials per optimisation (per fold). A grid runs at most its size.",
    )
    search_space = serializers.DictField(
        child=DimensionSerializer(),
        required=False,
        help_text='Parameter name to its dimension, e.g. {"fast": {"low": 5, "high": 50}, '
        '"slow": {"low": 20, "high": 200, "step": 10}}. Left out: every parameter of the '
        "kind over its spec's range. Parameters not named keep the strategy's values.",
    )
    objectives = ObjectiveSerializer(
        many=True,
        required=False,
        help_text="One objective, or several for a Pareto front (sampler nsga2 or tpe). "
        'Default [{"metric": "sharpe", "direction": "maximize"}].',
    )
    constraints = ConstraintSerializer(
        many=True,
        required=False,
        help_text="Bounds a trial must meet to be chosen, e.g. "
        '[{"metric": "max_drawdown_pct", "min": -25}].',
    )
    min_trades = serializers.IntegerField(
        required=False, min_value=0, help_text="Shorthand for a constraint num_trades >= n."
    )
    parallelism = serializers.IntegerField(
        default=2, min_value=1, help_text="Trials (or batches) in flight at once."
    )
    seed = serializers.IntegerField(default=0, min_value=0, max_value=2**31 - 1)
    walk_forward = WalkForwardSerializer(
        required=False,
        allow_null=True,
        help_text="Optimise on each fold's in-sample window, test on the window after it.",
    )
    compare_whole_period = serializers.BooleanField(
        default=True,
        help_text="Walk-forward only: also optimise once over the whole range, to compare.",
    )
    use_cache = serializers.BooleanField(
        default=True, help_text="False computes every trial and fold again."
    )


# --- Response serializers -------------------------------------------------------------


class StudySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    websocket = serializers.SerializerMethodField()
    summary = serializers.JSONField(
        read_only=True,
        help_text="Once succeeded: result_key; overfitting (deflated_sharpe_ratio and "
        "probability_of_backtest_overfitting with their inputs) and importance and "
        "pareto_front of the whole-period optimisation; whole_period_best; and for a "
        "walk-forward, walk_forward: {folds, oos_start, oos_end, oos_metrics (the stitched "
        "out-of-sample curve's), efficiency {value, per_fold, ...}, parameter_stability, "
        "whole_period {parameters, is_metrics, oos_span_metrics}}.",
    )

    class Meta:
        model = Study
        fields = [
            "id",
            "owner",
            "strategy",
            "kind",
            "parameters",
            "symbol",
            "timeframe",
            "start",
            "end",
            "initial_capital",
            "fee_rate",
            "slippage_bps",
            "size_fraction",
            "sizing",
            "fixed_quantity",
            "fixed_notional",
            "risk_pct",
            "fixed_fee",
            "min_fee",
            "allow_short",
            "stop_loss_pct",
            "take_profit_pct",
            "execution",
            "mode",
            "sampler",
            "search_space",
            "objectives",
            "constraints",
            "n_trials",
            "parallelism",
            "seed",
            "walk_forward",
            "compare_whole_period",
            "use_cache",
            "status",
            "progress",
            "trials_total",
            "trials_done",
            "trials_cached",
            "trials_failed",
            "folds_total",
            "folds_done",
            "best_trial_number",
            "best_parameters",
            "best_values",
            "summary",
            "error",
            "websocket",
            "optuna_prefix",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_websocket(self, study: Study) -> str:
        return f"/ws/studies/{study.pk}/"


class StudyTrialSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    stage = serializers.ChoiceField(
        source="fold.role",
        choices=FoldRole.choices,
        read_only=True,
        help_text="fold: a walk-forward fold's in-sample optimisation; whole: the whole period's.",
    )
    fold = serializers.SerializerMethodField(help_text="The fold's index; null for whole.")
    backtest = serializers.SerializerMethodField(
        help_text="The body to POST to /api/v1/backtests/ to open this trial as a backtest."
    )

    class Meta:
        model = StudyTrial
        fields = [
            "id",
            "stage",
            "fold",
            "slot",
            "number",
            "state",
            "params",
            "values",
            "metrics",
            "constraint_values",
            "feasible",
            "error",
            "params_hash",
            "cache_hit",
            "worker",
            "attempts",
            "started_at",
            "finished_at",
            "duration_seconds",
            "engine_seconds",
            "backtest",
        ]
        read_only_fields = fields

    def get_fold(self, trial: StudyTrial) -> int | None:
        return trial.fold.index if trial.fold.role == FoldRole.FOLD else None

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_backtest(self, trial: StudyTrial) -> dict[str, Any]:
        study, fold = trial.study, trial.fold
        settings = {
            name: str(value) if isinstance(value, Decimal) else value
            for name, value in stored_overrides(study).items()
        }
        return {
            "strategy": study.strategy_id,
            "start": fold.is_start.isoformat(),
            "end": fold.is_end.isoformat(),
            **settings,
            "parameters": {**study.parameters, **trial.params},
        }


class StudyFoldSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    is_bars = serializers.SerializerMethodField()
    oos_bars = serializers.SerializerMethodField()
    efficiency = serializers.SerializerMethodField(
        help_text="Walk-forward efficiency: out-of-sample over in-sample annualised return; "
        "null when the in-sample return is not positive."
    )

    class Meta:
        model = StudyFold
        fields = [
            "index",
            "status",
            "is_start",
            "is_end",
            "oos_start",
            "oos_end",
            "is_bars",
            "oos_bars",
            "trials_done",
            "cache_hit",
            "best_trial_number",
            "best_values",
            "chosen_parameters",
            "is_metrics",
            "oos_metrics",
            "efficiency",
            "overfitting",
            "importance",
            "pareto_front",
            "optuna_study_name",
            "error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_is_bars(self, fold: StudyFold) -> int:
        return fold.is_end_bar - fold.is_first_bar

    def get_oos_bars(self, fold: StudyFold) -> int | None:
        return None if fold.oos_end_bar is None else fold.oos_end_bar - fold.is_end_bar

    def get_efficiency(self, fold: StudyFold) -> float | None:
        oos = (fold.oos_metrics or {}).get("annualized_return_pct")
        ins = (fold.is_metrics or {}).get("annualized_return_pct")
        if not isinstance(oos, int | float) or not isinstance(ins, int | float) or ins <= 0:
            return None
        return round(float(oos) / float(ins), 6)


class CurveSerializer(serializers.Serializer):  # type: ignore[type-arg]
    ts = serializers.ListField(child=serializers.DateTimeField())
    equity = serializers.ListField(child=serializers.FloatField())


class StudyEquitySerializer(serializers.Serializer):  # type: ignore[type-arg]
    study = serializers.IntegerField()
    stitched_oos = CurveSerializer(
        help_text="Walk-forward: one simulation over the out-of-sample span, each fold's "
        "chosen parameters trading its own out-of-sample bars. Empty otherwise."
    )
    whole_period = CurveSerializer(
        help_text="The whole-period optimum: over the out-of-sample span (walk-forward), or "
        "over the whole range (optimisation)."
    )


class EquityQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    max_points = serializers.IntegerField(
        required=False,
        default=2000,
        min_value=2,
        max_value=20_000,
        help_text="Points per curve at most; evenly thinned, first and last kept.",
    )


class ExportQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    format = serializers.ChoiceField(choices=["xlsx", "csv"], default="xlsx")
    table = serializers.ChoiceField(
        choices=list(TABLES), default="trials", help_text="csv only: which table."
    )


class DeflatedSharpeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    value = serializers.FloatField(allow_null=True, help_text="DSR, a probability.")
    sharpe = serializers.FloatField(help_text="The chosen trial's per-period Sharpe ratio.")
    benchmark_sharpe = serializers.FloatField(help_text="SR0: expected maximum of N trials.")
    n_trials = serializers.IntegerField()
    sharpe_variance = serializers.FloatField()
    observations = serializers.IntegerField(help_text="T: the returns of the chosen trial.")
    skewness = serializers.FloatField()
    kurtosis = serializers.FloatField(help_text="Not excess: 3 for normal returns.")


class BacktestOverfittingSerializer(serializers.Serializer):  # type: ignore[type-arg]
    value = serializers.FloatField(allow_null=True, help_text="PBO, a probability.")
    n_trials = serializers.IntegerField()
    observations = serializers.IntegerField()
    splits = serializers.IntegerField(help_text="S, the blocks CSCV splits the rows into.")
    combinations = serializers.IntegerField()
    rows_dropped = serializers.IntegerField()
    probability_oos_loss = serializers.FloatField(allow_null=True)


class SweepOverfittingSerializer(serializers.Serializer):  # type: ignore[type-arg]
    sweep = serializers.IntegerField()
    rank_metric = serializers.CharField()
    best_parameters = serializers.JSONField(allow_null=True)
    combinations = serializers.IntegerField()
    computed = serializers.IntegerField(help_text="Combinations backtested for this answer.")
    cached = serializers.IntegerField()
    performance = serializers.CharField()
    deflated_sharpe_ratio = DeflatedSharpeSerializer()
    probability_of_backtest_overfitting = BacktestOverfittingSerializer()


_conflict = OpenApiResponse(description="The study has already finished.")


# --- Views ----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List studies", description="Your studies (all for staff)."),
    retrieve=extend_schema(summary="One study"),
)
@extend_schema(tags=["studies"])
class StudyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = Study.objects.none()  # for the schema; requests use get_queryset
    lookup_value_regex = ID_PATTERN
    serializer_class = StudySerializer
    filterset_class = StudyFilter
    filter_backends = [DjangoFilterBackend]
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):
            return Study.objects.none()
        return selectors.study_list(user=_user(self.request))

    def get_object(self) -> Study:
        study = selectors.study_get(user=_user(self.request), study_id=int(self.kwargs["pk"]))
        if study is None:
            raise NotFound("No such study.")
        return study

    @extend_schema(
        summary="Start a study",
        description="An Optuna optimisation of a strategy's parameters, or a walk-forward "
        "of them, run by Celery workers. Bad input is a 400 naming each field, and creates "
        f"nothing. At most {settings.STUDY_MAX_TRIALS} trials per optimisation, "
        f"{settings.STUDY_MAX_FOLDS} folds and parallelism {settings.STUDY_MAX_PARALLELISM}.",
        request=StudySubmitSerializer,
        responses={
            201: StudySerializer,
            400: OpenApiResponse(description="Per-field errors, nested for nested fields."),
        },
    )
    def create(self, request: Request) -> Response:
        form = StudySubmitSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        study = services.study_submit(
            user=_user(request),
            strategy=data["strategy"],
            start=data["start"],
            end=data["end"],
            sampler=data["sampler"],
            n_trials=data["n_trials"],
            search_space=data.get("search_space"),
            objectives=data.get("objectives"),
            constraints=data.get("constraints"),
            min_trades=data.get("min_trades"),
            parallelism=data["parallelism"],
            seed=data["seed"],
            walk_forward=data.get("walk_forward"),
            compare_whole_period=data["compare_whole_period"],
            overrides=form.overrides(),
            use_cache=data["use_cache"],
        )
        return Response(StudySerializer(study).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a queued or running study",
        request=None,
        responses={200: StudySerializer, 409: _conflict},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        study = services.study_cancel(study=self.get_object())
        return Response(StudySerializer(study).data)

    @extend_schema(
        summary="The study's trials",
        description="Oldest first. `backtest` is the request that opens a trial as a "
        "backtest of its window.",
        responses=StudyTrialSerializer(many=True),
        parameters=[
            OpenApiParameter("state", str, enum=[choice for choice, _ in TrialState.choices]),
            OpenApiParameter(
                "role",
                str,
                enum=[choice for choice, _ in FoldRole.choices],
                description="fold: a walk-forward fold's trials; whole: the whole period's.",
            ),
            OpenApiParameter("fold", int, description="A fold's index (with role=fold)."),
            OpenApiParameter("cache_hit", bool),
        ],
    )
    @action(detail=True, methods=["get"], filter_backends=[], ordering=["id"])
    def trials(self, request: Request, pk: str) -> Response:
        study = self.get_object()
        trials = StudyTrialFilter(request.query_params, selectors.study_trials(study=study))
        if not trials.is_valid():
            raise ValidationError(trials.errors)
        page = self.paginate_queryset(trials.qs.select_related("study"))
        return self.get_paginated_response(StudyTrialSerializer(page, many=True).data)

    @extend_schema(
        summary="The walk-forward's folds",
        description="In order; empty for an optimisation (its result is on the study).",
        responses=StudyFoldSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def folds(self, request: Request, pk: str) -> Response:
        folds = selectors.study_folds(study=self.get_object())
        return Response(StudyFoldSerializer(folds, many=True).data)

    @extend_schema(
        summary="The study's equity curves",
        parameters=[EquityQuerySerializer],
        responses=StudyEquitySerializer,
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def equity(self, request: Request, pk: str) -> Response:
        study = self.get_object()
        query = EquityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        curves = selectors.study_curves(study=study, max_points=query.validated_data["max_points"])
        return Response({"study": study.pk, **curves})

    @extend_schema(
        summary="Download the trials and folds",
        description="xlsx: sheets summary, trials and folds. csv: one table (`table`).",
        parameters=[ExportQuerySerializer],
        responses={
            (200, XLSX_MIME): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
        },
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[XlsxRenderer, CsvRenderer, JSONRenderer],
        filter_backends=[],
        pagination_class=None,
    )
    def export(self, request: Request, pk: str) -> Any:
        study = self.get_object()
        query = ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data["format"] == "csv":
            table = query.validated_data["table"]
            return _download(
                services.study_export_csv(study=study, table=table),
                filename=f"study-{study.pk}-{table}.csv",
                mime="text/csv",
            )
        return _download(
            services.study_export_xlsx(study=study),
            filename=f"study-{study.pk}.xlsx",
            mime=XLSX_MIME,
        )


class SweepOverfittingView(APIView):
    """`sweeps/<id>/overfitting/`: here rather than in backtests, which may not import the
    statistics of studies."""

    @extend_schema(
        tags=["sweeps"],
        summary="A sweep's Deflated Sharpe Ratio and PBO",
        description="Computed on request from each combination's per-period returns: read "
        "from the study-trial cache, or backtested again (then cached). 409 when the sweep "
        "has not succeeded, has fewer than two combinations, or is too large to recompute.",
        responses={
            200: SweepOverfittingSerializer,
            409: OpenApiResponse(description="Nothing to compute, or too much."),
        },
    )
    def get(self, request: Request, sweep_id: str) -> Response:
        sweep = backtest_selectors.sweep_get(user=_user(request), sweep_id=int(sweep_id))
        if sweep is None:
            raise NotFound("No such sweep.")
        return Response(services.sweep_overfitting(sweep=sweep))
