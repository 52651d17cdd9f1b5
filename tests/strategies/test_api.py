"""The strategy API over real HTTP calls, as two ordinary users."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from rest_framework.test import APIClient

from backtests import services as backtest_services
from backtests.models import BacktestRun
from strategies.models import Strategy
from tests.backtests.conftest import END, T0, add_candles
from tests.factories import InstrumentFactory, StrategyFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/strategies/"


def logged_in(user) -> APIClient:  # type: ignore[no-untyped-def]
    """A session client: auditlog's middleware names the user as the actor, as in a browser."""
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def alice(user):  # type: ignore[no-untyped-def]
    return logged_in(user)


@pytest.fixture
def bob(other_user):  # type: ignore[no-untyped-def]
    return logged_in(other_user)


@pytest.fixture
def market(db):  # type: ignore[no-untyped-def]
    instrument = InstrumentFactory(symbol="BTCUSDT")
    add_candles(instrument)
    return instrument


def payload(**extra):  # type: ignore[no-untyped-def]
    return {
        "name": "trend",
        "kind": "sma_cross",
        "parameters": {"fast": 5, "slow": 20},
        "symbol": "BTCUSDT",
        "timeframe": "1h",
    } | extra


def create(client, **extra) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(URL, payload(**extra), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def backtest(client, strategy_id: int) -> dict:  # type: ignore[no-untyped-def]
    body = {"strategy": strategy_id, "start": T0.isoformat(), "end": END.isoformat()}
    response = client.post("/api/v1/backtests/", body, format="json")
    assert response.status_code == 201, response.json()
    run = BacktestRun.objects.get(pk=response.json()["id"])
    if run.status == "queued":
        backtest_services.backtest_execute(run_id=run.pk, task_id=run.celery_task_id)
    return client.get(f"/api/v1/backtests/{run.pk}/").json()


# --- Create, read, list ---------------------------------------------------------------------


def test_create_returns_the_strategy_with_defaults_filled(alice, user, market):
    data = create(alice, parameters={"fast": 5})
    assert data["parameters"] == {"fast": 5, "slow": 50}
    assert data["symbol"] == "BTCUSDT" and data["status"] == "draft"
    assert data["initial_capital"] == "10000.00"
    strategy = Strategy.objects.get(pk=data["id"])
    assert strategy.owner == user
    assert alice.get(f"{URL}{data['id']}/").json() == data


def test_invalid_parameters_are_a_400_naming_the_parameter(alice, market):
    response = alice.post(URL, payload(parameters={"fast": 30, "slow": 20}), format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["parameters.fast"]
    assert "less than slow" in response.json()["parameters.fast"][0]
    unknown = alice.post(URL, payload(parameters={"fast": 5, "bogus": 1}), format="json")
    assert unknown.status_code == 400 and "parameters.bogus" in unknown.json()
    assert not Strategy.objects.exists()


def test_bad_fields_are_400s_naming_them(alice, market):
    response = alice.post(
        URL,
        payload(kind="nope", symbol="NOPE", fee_rate="1.5", status="archived"),
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"kind", "symbol", "fee_rate", "status"}


def test_a_duplicate_name_is_a_400_naming_name(alice, bob, market):
    create(alice)
    response = alice.post(URL, payload(), format="json")
    assert response.status_code == 400
    assert response.json() == {"name": ["You already have a strategy with this name."]}
    create(bob)  # another user may use the same name
    assert Strategy.objects.filter(name="trend").count() == 2


def test_buy_and_hold_with_empty_parameters_is_created_and_backtested(alice, market):
    data = create(alice, name="hold", kind="buy_and_hold", parameters={})
    assert data["parameters"] == {}
    run = backtest(alice, data["id"])
    assert run["status"] == "succeeded", run["error"]
    assert run["strategy"] == data["id"] and run["kind"] == "buy_and_hold"


def test_a_strategy_created_over_the_api_backtests_over_the_api(alice, market):
    data = create(alice)
    run = backtest(alice, data["id"])
    assert run["status"] == "succeeded", run["error"]
    assert run["parameters"] == {"fast": 5, "slow": 20}


def test_the_list_filters_by_kind_symbol_status_and_name(alice, user, market):
    InstrumentFactory(symbol="ETHUSDT")
    create(alice, name="BTC trend")
    hold = create(alice, name="BTC hold", kind="buy_and_hold", parameters={})
    create(alice, name="ETH trend", symbol="ETHUSDT")
    alice.post(f"{URL}{hold['id']}/archive/")

    def names(**query):  # type: ignore[no-untyped-def]
        response = alice.get(URL, query)
        assert response.status_code == 200, response.json()
        return [row["name"] for row in response.json()["results"]]

    assert names() == ["BTC hold", "BTC trend", "ETH trend"]  # by name
    assert names(kind="buy_and_hold") == ["BTC hold"]
    assert names(symbol="ethusdt") == ["ETH trend"]
    assert names(status="archived") == ["BTC hold"]
    assert names(status="draft", symbol="BTCUSDT") == ["BTC trend"]
    assert names(search="TREND") == ["BTC trend", "ETH trend"]
    assert alice.get(URL, {"kind": "nope"}).status_code == 400


def test_the_list_is_cursor_paginated(alice, market):
    for n in range(3):
        create(alice, name=f"s{n}")
    first = alice.get(URL, {"limit": 2}).json()
    assert [row["name"] for row in first["results"]] == ["s0", "s1"]
    second = alice.get(first["next"]).json()
    assert [row["name"] for row in second["results"]] == ["s2"] and second["next"] is None


def test_the_kinds_catalogue_still_answers_at_its_url(alice):
    response = alice.get(f"{URL}kinds/")
    assert response.status_code == 200
    assert "buy_and_hold" in [kind["name"] for kind in response.json()]


# --- Edit, archive, restore, clone, delete ---------------------------------------------------


def test_patch_and_put_edit_through_the_service(alice, market):
    data = create(alice)
    patched = alice.patch(
        f"{URL}{data['id']}/", {"parameters": {"fast": 8, "slow": 40}}, format="json"
    )
    assert patched.status_code == 200
    assert patched.json()["parameters"] == {"fast": 8, "slow": 40}
    assert patched.json()["name"] == "trend"
    bad = alice.patch(f"{URL}{data['id']}/", {"parameters": {"slow": 2}}, format="json")
    assert bad.status_code == 400
    assert bad.json() and all(key.startswith("parameters.") for key in bad.json()), bad.json()
    assert alice.get(f"{URL}{data['id']}/").json()["parameters"] == {"fast": 8, "slow": 40}
    put = alice.put(
        f"{URL}{data['id']}/",
        payload(name="trend b", kind="buy_and_hold", parameters={}, status="active"),
        format="json",
    )
    assert put.status_code == 200, put.json()
    assert (put.json()["name"], put.json()["kind"], put.json()["status"]) == (
        "trend b",
        "buy_and_hold",
        "active",
    )
    incomplete = alice.put(f"{URL}{data['id']}/", {"name": "x"}, format="json")
    assert incomplete.status_code == 400 and {"kind", "symbol"} <= set(incomplete.json())


def test_renaming_onto_another_strategys_name_is_a_400(alice, market):
    create(alice, name="a")
    b = create(alice, name="b")
    response = alice.patch(f"{URL}{b['id']}/", {"name": "a"}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["name"]
    assert Strategy.objects.get(pk=b["id"]).name == "b"


def test_status_cannot_be_set_to_archived_by_an_edit(alice, market):
    data = create(alice)
    response = alice.patch(f"{URL}{data['id']}/", {"status": "archived"}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["status"]


def test_archive_and_restore_return_to_the_status_it_had(alice, market):
    data = create(alice, status="paused")
    archived = alice.post(f"{URL}{data['id']}/archive/")
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    restored = alice.post(f"{URL}{data['id']}/restore/")
    assert restored.status_code == 200 and restored.json()["status"] == "paused"


def test_restore_without_a_known_status_is_draft(alice, user, market):
    strategy = StrategyFactory(owner=user, instrument=market, status="archived")
    assert alice.post(f"{URL}{strategy.pk}/restore/").json()["status"] == "draft"


def test_clone_saves_a_copy_under_a_new_name(alice, market):
    data = create(alice, status="active", timeframe="4h", fee_rate="0.0005", description="d")
    response = alice.post(f"{URL}{data['id']}/clone/", {"name": "trend v2"}, format="json")
    assert response.status_code == 201
    copy = response.json()
    assert copy["id"] != data["id"] and copy["name"] == "trend v2"
    assert copy["status"] == "draft"
    for field in ["kind", "parameters", "symbol", "timeframe", "initial_capital", "fee_rate"]:
        assert copy[field] == data[field], field
    assert copy["slippage_bps"] == data["slippage_bps"]
    assert copy["description"] == "d"
    taken = alice.post(f"{URL}{data['id']}/clone/", {"name": "trend"}, format="json")
    assert taken.status_code == 400 and list(taken.json()) == ["name"]
    nameless = alice.post(f"{URL}{data['id']}/clone/", {}, format="json")
    assert nameless.status_code == 400 and list(nameless.json()) == ["name"]


def test_a_strategy_without_runs_is_deleted(alice, market):
    data = create(alice)
    assert alice.delete(f"{URL}{data['id']}/").status_code == 204
    assert not Strategy.objects.exists()


def test_a_strategy_with_runs_is_a_409_saying_to_archive_it(alice, market):
    data = create(alice)
    backtest(alice, data["id"])
    response = alice.delete(f"{URL}{data['id']}/")
    assert response.status_code == 409
    assert "archive it" in response.json()["detail"]
    assert Strategy.objects.filter(pk=data["id"]).exists()
    assert BacktestRun.objects.get().strategy_id == data["id"]


# --- Runs -------------------------------------------------------------------------------------


def test_a_strategys_runs_come_newest_first_and_paginated(alice, market):
    data = create(alice)
    other = create(alice, name="other")
    first = backtest(alice, data["id"])
    second = backtest(alice, data["id"])  # a cache hit, still a run of its own
    backtest(alice, other["id"])
    page = alice.get(f"{URL}{data['id']}/runs/", {"limit": 1}).json()
    assert [run["id"] for run in page["results"]] == [second["id"]]
    rest = alice.get(page["next"]).json()
    assert [run["id"] for run in rest["results"]] == [first["id"]]
    assert rest["next"] is None


# --- Another user ---------------------------------------------------------------------------


def test_another_user_gets_404_everywhere_and_no_list_entry(alice, bob, market):
    data = create(alice)
    backtest(alice, data["id"])
    detail = f"{URL}{data['id']}/"
    assert bob.get(detail).status_code == 404
    assert bob.patch(detail, {"name": "mine"}, format="json").status_code == 404
    assert bob.put(detail, payload(name="mine"), format="json").status_code == 404
    assert bob.delete(detail).status_code == 404
    assert bob.post(f"{detail}archive/").status_code == 404
    assert bob.post(f"{detail}restore/").status_code == 404
    assert bob.post(f"{detail}clone/", {"name": "mine"}, format="json").status_code == 404
    runs = bob.get(f"{detail}runs/")
    assert runs.status_code == 404 and runs.json() == {"detail": "No such strategy."}
    assert bob.get(URL).json()["results"] == []
    assert bob.get(URL, {"search": "trend"}).json()["results"] == []
    strategy = Strategy.objects.get(pk=data["id"])
    assert (strategy.name, strategy.status) == ("trend", "draft")
    assert Strategy.objects.count() == 1


def test_staff_manage_only_their_own_strategies_over_the_api(alice, staff_user, market):
    data = create(alice)
    staff = logged_in(staff_user)
    assert staff.get(URL).json()["results"] == []
    assert staff.get(f"{URL}{data['id']}/").status_code == 404
    assert staff.get(f"{URL}{data['id']}/runs/").status_code == 404


def test_an_id_past_a_bigint_is_a_404(alice):
    assert alice.get(f"{URL}{'9' * 30}/").status_code == 404
    assert alice.get(f"{URL}{'9' * 30}/runs/").status_code == 404


# --- Audit ----------------------------------------------------------------------------------


def test_api_writes_are_audited_with_their_actor(alice, user, market):
    data = create(alice)
    alice.patch(f"{URL}{data['id']}/", {"description": "edited"}, format="json")
    alice.post(f"{URL}{data['id']}/archive/")
    copy = alice.post(f"{URL}{data['id']}/clone/", {"name": "copy"}, format="json").json()
    alice.delete(f"{URL}{copy['id']}/")
    entries = LogEntry.objects.filter(content_type__model="strategy")
    actions = [(int(e.object_pk), e.action) for e in entries.order_by("id")]
    assert actions == [
        (data["id"], LogEntry.Action.CREATE),
        (data["id"], LogEntry.Action.UPDATE),
        (data["id"], LogEntry.Action.UPDATE),
        (copy["id"], LogEntry.Action.CREATE),
        (copy["id"], LogEntry.Action.DELETE),
    ]
    assert {entry.actor for entry in entries} == {user}


def test_writes_with_a_jwt_are_audited_with_their_actor(user, market):
    client = APIClient()
    token = client.post(
        "/api/v1/auth/token/", {"username": user.username, "password": "pass-word-123"}
    ).json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    data = create(client)
    entry = LogEntry.objects.get(content_type__model="strategy", object_pk=str(data["id"]))
    assert entry.actor == user
