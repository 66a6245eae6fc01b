"""The simulate step's logic: traffic, slates, serving, outcomes, truth, and the readout of the records it writes
(stand-in routers recorded as a served router is, no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ab_router.decision_log import DecisionLog, RouterIdentity
from ab_router.sinks import DirectorySink
from abtest.evaluation.decision import NO_WINNER
from abtest.experiment import traffic
from abtest.experiment.click_model import fit_click_model
from abtest.experiment.plan import AnalysisPlan
from abtest.experiment.readout.page import FILES, SECTIONS, write_readout
from abtest.experiment.router_client import recording_scorer
from abtest.experiment.runner import ExperimentOutcome, ExperimentSpec, RecordsTarget, run_experiment
from tests.fixtures.experiment import StandInRouter, item_hash_score, prepared_data

ROUTER_NAME, ROUTER_VERSION = "stand_in_router", "1"


def _spec(**overrides) -> ExperimentSpec:
    values = dict(
        environment="synthetic", days=4, users_per_day=0, k=5, n_unseen=10, seed=0, alpha=0.05, split=0.5
    )
    return ExperimentSpec(**{**values, **overrides})


def _experiment(data, router: StandInRouter, spec: ExperimentSpec, directory: Path) -> ExperimentOutcome:
    """``run_experiment`` through ``router`` recorded as a served router is, read out with a plan that ends on
    the spec's last day (so the fixed-horizon interval decides)."""

    def answers(pairs, params):  # the router's answer carries the request id it was given
        return router(pairs, params).assign(request_id=pairs["request_id"].to_numpy())

    router_log = directory / "router-log"
    decision_log = DecisionLog(DirectorySink(router_log), RouterIdentity(ROUTER_NAME, ROUTER_VERSION, "test"))
    target = RecordsTarget(
        directory=directory / "records",
        router_log=router_log,
        router_name=ROUTER_NAME,
        router_version=ROUTER_VERSION,
        salt=router.assignment.salt,
        plan=AnalysisPlan(alpha=spec.alpha, planned_days=spec.days).to_json(),
    )
    scorer = recording_scorer(answers, decision_log, router.assignment)
    return run_experiment(data, scorer, spec, records=target, truth_scorer=answers)


def test_arrivals_in_test_period_order_each_user_once(small_prepared):
    test = small_prepared.test
    requests = traffic.arrivals(test, days=4, users_per_day=0, rng=np.random.default_rng(0))
    first_seen = test.groupby("user_id")["timestamp"].min().sort_values(kind="stable")
    assert requests["user_id"].tolist() == first_seen.index.tolist()
    assert requests["day"].is_monotonic_increasing and set(requests["day"]) == {1, 2, 3, 4}
    assert requests["request_id"].is_unique


def test_arrivals_with_users_per_day_lets_users_return(small_prepared):
    requests = traffic.arrivals(small_prepared.test, days=5, users_per_day=20, rng=np.random.default_rng(0))
    assert requests.groupby("day").size().tolist() == [20] * 5
    assert requests.groupby("day")["user_id"].nunique().tolist() == [20] * 5
    assert requests["user_id"].value_counts().max() > 1
    with pytest.raises(ValueError, match="users_per_day must be >= 0"):
        traffic.arrivals(small_prepared.test, days=5, users_per_day=-1, rng=np.random.default_rng(0))


def test_candidate_slates_hold_logged_items_and_never_rated_ones(small_prepared):
    data = small_prepared
    everything = pd.concat([data.train, data.val, data.test])
    requests = traffic.arrivals(data.test, days=2, users_per_day=0, rng=np.random.default_rng(0))
    slates = traffic.candidate_slates(
        requests,
        test=data.test,
        rated=everything,
        item_ids=data.items["item_id"].to_numpy(),
        n_unseen=5,
        rng=np.random.default_rng(1),
    )
    for user_id, slate in slates.groupby("user_id"):
        logged = data.test[data.test["user_id"] == user_id].set_index("item_id")["label"]
        assert slate.loc[slate["logged"], "item_id"].tolist() == logged.index.tolist()
        assert slate.loc[slate["logged"], "logged_label"].tolist() == logged.tolist()
        unseen = slate.loc[~slate["logged"], "item_id"]
        assert len(unseen) == 5 and unseen.is_unique
        rated = set(everything.loc[everything["user_id"] == user_id, "item_id"])
        assert not rated & set(unseen)
        assert (slate.loc[~slate["logged"], "logged_label"] == 0).all()


def test_serve_shows_the_top_k_of_the_assigned_policy():
    slates = pd.DataFrame(
        {
            "request_id": [0] * 4 + [1] * 3,
            "day": 1,
            "user_id": [5] * 4 + [6] * 3,
            "item_id": [1, 2, 3, 4, 1, 2, 3],
            "logged_label": [1, 0, 1, 0, 0, 1, 0],
            "logged": True,
        }
    )
    # A shows the highest item ids, B the lowest
    router = StandInRouter(lambda u, i: i.astype(float), lambda u, i: -i.astype(float))
    shown = traffic.serve(slates, router, k=2)
    assert shown.groupby("request_id").size().tolist() == [2, 2]
    for _, rows in shown.groupby("request_id"):
        candidates = sorted(slates.loc[slates["user_id"] == rows["user_id"].iloc[0], "item_id"])
        expected = candidates[::-1][:2] if rows["policy"].iloc[0] == "A" else candidates[:2]
        assert rows.sort_values("position")["item_id"].tolist() == expected


def test_serve_rejects_a_router_that_is_not_sticky():
    slates = pd.DataFrame(
        {"request_id": [0, 1], "day": 1, "user_id": [5, 5], "item_id": [1, 2], "logged_label": 0, "logged": True}
    )

    def flip(pairs, params):
        out = StandInRouter(item_hash_score, item_hash_score)(pairs, params)
        return out.assign(policy=["A", "B"])

    with pytest.raises(ValueError, match="sticky"):
        traffic.serve(slates, flip, k=1)


def test_replay_clicks_are_logged_positives_and_unseen_never_click():
    shown = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "logged_label": [1, 0, 0]})
    outcome = traffic.draw_outcomes(shown, "replay", rng=np.random.default_rng(0))
    assert outcome["click"].tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="environment must be one of"):
        traffic.draw_outcomes(shown, "live", rng=np.random.default_rng(0))


def test_click_model_learns_the_labels_and_handles_unseen_ids(small_prepared):
    data = small_prepared
    everything = pd.concat([data.train, data.val, data.test], ignore_index=True)
    model = fit_click_model(everything, data.items)
    p = model.probability(everything["user_id"].to_numpy(), everything["item_id"].to_numpy())
    assert roc_auc_score(everything["label"], p) > 0.75
    unseen = model.probability(np.array([10_000]), np.array([20_000]))
    assert unseen[0] == pytest.approx(1 / (1 + np.exp(-model.intercept)))


def test_synthetic_experiment_knows_the_truth_and_b_wins_when_b_ranks_by_it(tmp_path):
    data = prepared_data(n_users=300, n_items=60, n_ratings=6000, seed=3)
    everything = pd.concat([data.train, data.val, data.test], ignore_index=True)
    truth_model = fit_click_model(everything, data.items)
    router = StandInRouter(item_hash_score, truth_model.probability)
    outcome = _experiment(data, router, _spec(k=3, n_unseen=20, days=5), tmp_path)
    readout, truth = outcome.readout, outcome.truth
    assert truth["B"] > truth["A"]
    assert readout.arms["users"].sum() == data.test["user_id"].nunique()
    assert len(readout.daily) == 5 and readout.daily["users_A"].is_monotonic_increasing
    assert not readout.srm.flagged and readout.healthy, readout.health_failures
    primary = readout.primary
    assert primary.metric == "ctr" and primary.cuped.absolute.ci_low > 0
    assert primary.cuped.variance_reduction > 0 and primary.used is primary.cuped
    assert readout.winner == "B" and readout.decision.startswith("Ship policy B")
    # the observed CTR of each arm is close to its true CTR (the lift's standard error bounds each arm's)
    by_arm = readout.arms.set_index("arm")
    for arm in ("A", "B"):
        assert abs(by_arm.loc[arm, "ctr"] - truth[arm]) < 4 * primary.lift.absolute.se + 0.02


def test_aa_experiment_has_no_true_lift_and_no_decision(tmp_path, small_prepared):
    router = StandInRouter(item_hash_score, item_hash_score)
    outcome = _experiment(small_prepared, router, _spec(), tmp_path)
    readout = outcome.readout
    assert outcome.truth["A"] == outcome.truth["B"]
    assert readout.stop_day is None
    assert readout.winner == NO_WINNER and readout.decision.startswith("No significant difference")


def test_readout_artifacts_and_headline(tmp_path, small_prepared):
    router = StandInRouter(item_hash_score, lambda u, i: 1 - item_hash_score(u, i))
    outcome = _experiment(small_prepared, router, _spec(environment="replay"), tmp_path)
    readout = outcome.readout
    paths = write_readout(readout, tmp_path / "readout")
    assert [p.name for p in paths] == list(FILES)
    page = (tmp_path / "readout" / "readout.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}"' in page
    assert page.count("data:image/png;base64") == 2
    summary = json.loads((tmp_path / "readout" / "readout.json").read_text())
    assert summary["decision"] == readout.decision and summary["winner"] == readout.winner
    assert outcome.truth == {}  # replay: no ground truth
    headline = readout.headline()
    assert {"srm_p_value", "users_A", "users_B", "ctr_A", "ctr_B", "guardrail_cold_start_share_difference"} <= set(
        headline
    )
    assert headline["users_A"] + headline["users_B"] == small_prepared.test["user_id"].nunique()
    assert all(np.isfinite(v) for v in headline.values())
    cold = next(g for g in readout.guardrails if g.name == "cold_start_share")
    assert 0 < cold.control < 1


def test_experiment_spec_validates_the_design():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        _spec(split=1.0)
    with pytest.raises(ValueError, match="environment must be one of"):
        _spec(environment="live")


def test_endpoint_scorer_posts_dataframe_split_and_params_in_batches(monkeypatch):
    import http.server
    import threading

    from abtest.experiment import router_client

    router = StandInRouter(item_hash_score, item_hash_score)
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # the scoring server's /invocations contract
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "params": body.get("params")})
            split = body["dataframe_split"]
            pairs = pd.DataFrame(split["data"], columns=split["columns"])
            out = router(pairs, body.get("params")).astype({"model_version": str})
            payload = json.dumps({"predictions": out.to_dict(orient="records")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(router_client, "ENDPOINT_BATCH_ROWS", 4)
        scorer = router_client.endpoint_scorer(f"http://127.0.0.1:{server.server_port}", model_uri="models:/r/1")
        pairs = pd.DataFrame({"user_id": np.arange(10), "item_id": np.arange(10) + 1})
        routed = scorer(pairs, {"force_policy": "B"})
    finally:
        server.shutdown()
    assert len(seen) == 3 and all(s["path"] == "/invocations" for s in seen)
    assert seen[0]["params"] == {"force_policy": "B"}
    assert routed["user_id"].tolist() == list(range(10)) and set(routed["policy"]) == {"B"}
