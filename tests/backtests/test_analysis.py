"""backtests.analysis against answers worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from backtests.analysis import (
    AxisRule,
    duration_breakdown,
    exit_reason_breakdown,
    monthly_returns,
    pnl_histogram,
    sweep_surface,
)

HOUR, DAY = 3_600, 86_400


def _curve(points: dict[str, float]) -> pd.Series:
    return pd.Series(list(points.values()), index=pd.to_datetime(list(points), utc=True))


def _trades(*rows: tuple[float, float, str, float, bool]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["pnl", "pnl_pct", "exit_reason", "duration_seconds", "is_open"]
    )


# --- Monthly returns ------------------------------------------------------------------------


def test_monthly_returns_compound_month_ends_from_the_starting_capital() -> None:
    equity = _curve(
        {
            "2023-01-10 00:00": 104.0,
            "2023-01-31 23:00": 110.0,  # Jan: 110 / 100 = +10 %
            "2023-02-28 12:00": 99.0,  # Feb: 99 / 110 = -10 %
            # March has no bar: its equity stays 99, a 0 % month.
            "2023-04-30 00:00": 118.8,  # Apr: 118.8 / 99 = +20 %
            "2024-01-02 00:00": 130.68,  # Jan 2024: 130.68 / 118.8 = +10 %
        }
    )
    result = monthly_returns(equity, start_equity=100.0)

    assert result["years"] == [2023, 2024]
    assert result["months"][0] == "Jan" and len(result["months"]) == 12
    y2023, y2024 = result["returns"]
    assert y2023[:4] == pytest.approx([10.0, -10.0, 0.0, 20.0])
    assert y2023[4:] == pytest.approx([0.0] * 8)  # inside the span, no bars: flat months
    assert y2024[0] == pytest.approx(10.0)
    assert y2024[1:] == [None] * 11  # after the last bar: no return at all
    # 1.10 * 0.90 * 1.00 * 1.20 = 1.188, and 2024 is its one month.
    assert result["year_totals"] == pytest.approx([18.8, 10.0])


def test_monthly_returns_start_from_the_first_value_without_a_starting_capital() -> None:
    equity = _curve({"2023-03-01": 200.0, "2023-03-31": 210.0, "2023-04-15": 189.0})
    result = monthly_returns(equity)
    assert result["returns"][0][:2] == [None, None]  # before the first bar
    assert result["returns"][0][2:4] == pytest.approx([5.0, -10.0])
    assert result["year_totals"] == pytest.approx([-5.5])  # 1.05 * 0.9 = 0.945


def test_an_empty_curve_has_no_years() -> None:
    empty = pd.Series([], dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
    assert monthly_returns(empty)["years"] == []


# --- The pnl distribution ---------------------------------------------------------------------


def test_the_histogram_puts_zero_on_an_edge_and_counts_winners_and_losers_apart() -> None:
    trades = _trades(
        (-30, -3.0, "stop", HOUR, False),
        (-10, -1.0, "signal", HOUR, False),
        (5, 0.5, "signal", HOUR, False),
        (20, 2.0, "target", HOUR, False),
        (45, 4.5, "signal", HOUR, False),
        (99, 9.9, "end", HOUR, True),  # still open: left out
    )
    # Span -3 .. 4.5 = 7.5 over 4 bins is 1.875, rounded up to a width of 2.
    result = pnl_histogram(trades, bins=4)
    assert result["edges"] == [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0]
    assert result["losers"] == [1, 1, 0, 0, 0]
    assert result["winners"] == [0, 0, 1, 1, 1]
    assert result["trades"] == 5


def test_a_break_even_trade_is_not_a_winner() -> None:
    trades = _trades((0, 0.0, "signal", HOUR, False), (10, 1.0, "signal", HOUR, False))
    result = pnl_histogram(trades, bins=2)  # span 0 .. 1 → width 0.5
    assert result["edges"] == [0.0, 0.5, 1.0]
    assert result["losers"] == [1, 0] and result["winners"] == [0, 1]


def test_no_closed_trades_is_an_empty_histogram() -> None:
    assert pnl_histogram(_trades((5, 1.0, "end", HOUR, True)))["trades"] == 0


# --- Breakdowns ---------------------------------------------------------------------------------


def test_the_exit_reason_breakdown_counts_win_rate_and_pnl_per_reason() -> None:
    trades = _trades(
        (-30, -3.0, "stop", HOUR, False),
        (-10, -1.0, "signal", HOUR, False),
        (5, 0.5, "signal", HOUR, False),
        (20, 2.0, "target", HOUR, False),
        (45, 4.5, "signal", HOUR, False),
        (7, 0.7, "end", HOUR, True),
    )
    rows = {row["reason"]: row for row in exit_reason_breakdown(trades)}
    assert list(rows) == ["signal", "stop", "target"]  # most frequent first; open left out
    signal = rows["signal"]
    assert signal["count"] == 3
    assert signal["win_rate_pct"] == pytest.approx(200 / 3)
    assert signal["total_pnl"] == pytest.approx(40.0)
    assert signal["avg_pnl"] == pytest.approx(40 / 3)
    assert signal["avg_pnl_pct"] == pytest.approx(4 / 3)
    assert rows["stop"] == {
        "reason": "stop",
        "count": 1,
        "win_rate_pct": 0.0,
        "total_pnl": -30.0,
        "avg_pnl": -30.0,
        "avg_pnl_pct": -3.0,
    }


def test_the_duration_breakdown_buckets_holding_times_lower_bound_included() -> None:
    trades = _trades(
        (-30, -3.0, "stop", 59 * 60, False),  # < 1 h
        (-10, -1.0, "signal", HOUR, False),  # exactly 1 h: 1-4 h
        (6, 0.6, "signal", 4 * HOUR - 1, False),  # 1-4 h
        (20, 2.0, "target", DAY, False),  # exactly 1 day: 1-7 d
        (45, 4.5, "signal", 7 * DAY, False),  # exactly 7 days: > 7 d
        (1, 0.1, "end", 10 * DAY, True),  # open: left out
    )
    rows = duration_breakdown(trades)
    assert [row["bucket"] for row in rows] == [
        "< 1 h",
        "1\N{EN DASH}4 h",
        "4\N{EN DASH}24 h",
        "1\N{EN DASH}7 d",
        "> 7 d",
    ]
    assert [row["count"] for row in rows] == [1, 2, 0, 1, 1]
    one_to_four = rows[1]
    assert one_to_four["win_rate_pct"] == pytest.approx(50.0)
    assert one_to_four["avg_pnl"] == pytest.approx(-2.0)
    assert one_to_four["avg_pnl_pct"] == pytest.approx(-0.2)
    assert rows[2]["win_rate_pct"] is None and rows[2]["avg_pnl"] is None  # empty bucket


# --- Sweep surfaces ---------------------------------------------------------------------------

GRID = {"a": [1, 2], "b": [1, 2, 3], "c": [5, 7]}


def _sweep_rows(skip: tuple[int, int, int] | None = None) -> list[dict]:
    # metric = 10a + b + c/10, so every combination's value is easy to read off.
    return [
        {"params": {"a": a, "b": b, "c": c}, "metrics": {"m": 10 * a + b + c / 10}}
        for a in GRID["a"]
        for b in GRID["b"]
        for c in GRID["c"]
        if (a, b, c) != skip
    ]


AXES = [("a", GRID["a"]), ("b", GRID["b"])]
BEST = {"a": 2, "b": 3, "c": 7}


def test_a_slice_shows_each_combination_at_that_value_only() -> None:
    surface = sweep_surface(
        _sweep_rows(), metric="m", axes=AXES, rules={"c": AxisRule("at", 5)}, best=BEST
    )
    # Rows are b (up), columns a (across).
    assert all(
        line == pytest.approx(want)
        for line, want in zip(surface["z"], [[11.5, 21.5], [12.5, 22.5], [13.5, 23.5]], strict=True)
    )
    assert surface["combos"][2][1] == {"a": 2, "b": 3, "c": 5}
    assert surface["counts"] == [[1, 1]] * 3
    assert surface["best"] is None  # the best combination has c = 7: sliced away


def test_sliced_at_the_best_value_the_best_cell_is_the_true_best() -> None:
    surface = sweep_surface(
        _sweep_rows(), metric="m", axes=AXES, rules={"c": AxisRule("at", 7)}, best=BEST
    )
    assert surface["best"] == {"x_index": 1, "y_index": 2, "value": pytest.approx(23.7)}


@pytest.mark.parametrize(
    ("kind", "first_cell"),
    [("mean", 11.6), ("median", 11.6), ("max", 11.7), ("min", 11.5)],
)
def test_aggregates_fold_the_third_parameter(kind: str, first_cell: float) -> None:
    surface = sweep_surface(_sweep_rows(), metric="m", axes=AXES, rules={"c": AxisRule(kind)})
    assert surface["z"][0][0] == pytest.approx(first_cell)  # a=1, b=1 over c in 5, 7
    assert surface["counts"][0][0] == 2
    assert surface["combos"][0][0] == {"a": 1, "b": 1, "c": 7}  # the best it covers


def test_a_folded_cell_opens_its_lowest_combination_when_lower_is_better() -> None:
    surface = sweep_surface(
        _sweep_rows(), metric="m", axes=AXES, rules={"c": AxisRule("min")}, minimize=True
    )
    assert surface["combos"][0][0] == {"a": 1, "b": 1, "c": 5}


def test_a_combination_that_never_ran_is_an_empty_cell() -> None:
    surface = sweep_surface(
        _sweep_rows(skip=(1, 2, 5)), metric="m", axes=AXES, rules={"c": AxisRule("at", 5)}
    )
    assert surface["z"][1][0] is None and surface["combos"][1][0] is None
    assert surface["z"][1][1] == pytest.approx(22.5)


def test_one_axis_gives_a_flat_list_and_folds_in_rule_order() -> None:
    # c across; b sliced at 1, then a folded by its max: 20 + 1 + c/10.
    surface = sweep_surface(
        _sweep_rows(),
        metric="m",
        axes=[("c", GRID["c"])],
        rules={"a": AxisRule("max"), "b": AxisRule("at", 1)},
        best=BEST,
    )
    assert surface["z"] == pytest.approx([21.5, 21.7])
    assert surface["best"] is None  # b = 3 in the best combination


def test_a_missing_metric_value_is_left_out_of_the_fold() -> None:
    rows = _sweep_rows()
    rows[0]["metrics"]["m"] = None  # a=1, b=1, c=5
    rows[1]["metrics"]["m"] = math.nan  # a=1, b=1, c=7
    surface = sweep_surface(rows, metric="m", axes=AXES, rules={"c": AxisRule("mean")})
    assert surface["z"][0][0] is None
    assert surface["z"][0][1] == pytest.approx(21.6)


def test_a_sweep_without_results_yet_is_all_empty_cells() -> None:
    surface = sweep_surface([], metric="m", axes=AXES, rules={"c": AxisRule("max")}, best=None)
    assert surface["z"] == [[None, None]] * 3 and surface["best"] is None
