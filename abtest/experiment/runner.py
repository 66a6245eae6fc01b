"""One simulated A/B experiment end to end, from a prepare run's tables and a router to a readout.

:func:`run_experiment` is what the `simulate` step calls; it takes the router as a
:data:`abtest.experiment.traffic.Scorer`, so the benchmark and the tests run the same code with stand-in routers.
:mod:`abtest.experiment.router_client` connects the real router (in process or served).

Every experiment leaves in its :class:`RecordsTarget` the records a real deployment leaves (``ab_router.records``):
the router's decisions (written by the router's decision log while it scored, or from a served router's answers),
the impressions the simulated application showed and the clicks the environment drew (written with
``abtest.experiment.events``). The router stamps its decisions with the wall clock, while a simulation runs its
days in seconds: each decision is moved onto its request's simulated time (``traffic.request_times``), every
other field kept as the router wrote it, so decisions, impressions and clicks share one calendar. The readout is
then computed from those records by `analyze`'s code (:func:`records_readout`: the ingest reduction, then
``abtest.experiment.readout.experiment``): one readout path for simulated and real traffic. So the scorer must
record its decisions (``abtest.experiment.router_client.recording_scorer``, or the in-process router's log).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ab_router.arms import CONTROL, TREATMENT
from ab_router.records import DECISIONS, EVENT_TIME, REQUEST_ID
from ab_router.schema import ITEM_ID
from ab_router.sinks import Batch, DirectorySink, read_jsonl_file, table_files
from abtest.experiment import traffic
from abtest.experiment.click_model import fit_click_model
from abtest.experiment.plan import AnalysisPlan
from abtest.experiment.readout.experiment import RecordsReadout, effective_plan, readout_of_records
from abtest.tracking.lineage import PreparedData

log = logging.getLogger(__name__)


# The parameters of the design that need nothing loaded to be checked (the arguments of check_design).
DESIGN_FIELDS: tuple[str, ...] = ("environment", "days", "users_per_day", "k", "n_unseen", "alpha")


def design_fields(source: object) -> dict[str, Any]:
    """The design fields of anything that has them as attributes (a spec, a step's parsed parameters)."""
    return {name: getattr(source, name) for name in DESIGN_FIELDS}


def check_design(*, environment: str, days: int, users_per_day: int, k: int, n_unseen: int, alpha: float) -> None:
    """Reject a bad experiment design, naming the parameter, the rule and the value.

    Needs nothing loaded, so the `simulate` step calls it before it opens a run or loads the router.
    """
    if environment not in traffic.ENVIRONMENTS:
        raise ValueError(f"parameter environment must be one of {list(traffic.ENVIRONMENTS)}, got {environment!r}")
    for name, value, minimum, meaning in (
        ("days", days, 1, ""),
        ("users_per_day", users_per_day, 0, " (0 = the test period's users, once each)"),
        ("k", k, 1, " (items shown per request)"),
        ("n_unseen", n_unseen, 0, ""),
    ):
        if value < minimum:
            raise ValueError(f"parameter {name} must be an integer >= {minimum}{meaning}, got {value}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"parameter alpha must be strictly between 0 and 1, got {alpha}")


@dataclass(frozen=True)
class ExperimentSpec:
    """The experiment's design: traffic, outcomes and analysis options."""

    environment: traffic.Environment
    days: int
    users_per_day: int
    k: int
    n_unseen: int
    seed: int
    alpha: float
    split: float  # share of users the router sends to B

    def __post_init__(self) -> None:
        check_design(**design_fields(self))
        if not 0.0 < self.split < 1.0:
            raise ValueError(
                f"the router's split (share of users sent to B) must be strictly between 0 and 1 for an A/B "
                f"test, got {self.split}"
            )


@dataclass(frozen=True)
class RecordsTarget:
    """Where an experiment's records go, where the router's decision log was written while it scored, and which
    experiment the records are of (the router's identity as its decisions record it, and its analysis plan)."""

    directory: Path  # the records, in the layout of ab_router.records (decisions/, impressions/, outcomes/)
    router_log: Path  # the router's decision log (wall-clock times); moved into ``directory`` on the calendar
    router_name: str
    router_version: str
    salt: str
    plan: str | None = None  # the router version's tag abtest.analysis_plan (None: a router older than plans)


@dataclass(frozen=True)
class RecordCounts:
    """How many records of each table the experiment wrote."""

    decisions: int
    impressions: int
    outcomes: int


@dataclass(frozen=True)
class ExperimentOutcome:
    """The readout of the records written, the counts of those records and the raw impressions behind them."""

    readout: RecordsReadout
    impressions: pd.DataFrame
    user_days: pd.DataFrame
    records: RecordCounts
    truth: dict[str, float] = field(default_factory=dict)  # synthetic: each arm's true CTR had it served all


def _record_value(kind: str, value: Any) -> Any:
    # JSON Lines hold times as ISO text and a non-finite double as null.
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "double" and value is None:
        return float("nan")
    return value


def move_decisions(router_log: Path, sink: DirectorySink, times: pd.Series) -> int:
    """The router's decisions under ``router_log``, each moved onto its request's simulated time, appended to
    ``sink``; returns the number moved.

    Every other field stays as the router wrote it. A decision of a request this experiment did not make (not a
    ``traffic.request_key``), or a torn file, is an error naming the file and line: the log is this run's own.
    """
    kinds = {f.name: f.kind for f in DECISIONS.fields}
    moved = 0
    for path in table_files(router_log, DECISIONS):
        rows, torn = read_jsonl_file(path)
        if torn is not None:
            raise ValueError(f"{path}:{torn.line}: the router's decision log of this run has a torn last line")
        columns: dict[str, list[Any]] = {name: [] for name in DECISIONS.columns}
        for number, row in enumerate(rows, start=1):
            key = str(row.get(REQUEST_ID, ""))
            request = int(key.removeprefix("sim-")) if key.startswith("sim-") and key[4:].isdigit() else None
            if request is None or request not in times.index:
                raise ValueError(
                    f"{path}:{number}: decision of request_id {key!r}, not a request of this experiment"
                )
            for name in DECISIONS.columns:
                columns[name].append(_record_value(kinds[name], row.get(name)))
            columns[EVENT_TIME][-1] = times[request]
        if rows:
            moved += sink.append(Batch(DECISIONS, len(rows), columns=columns))
    return moved


def write_records(
    target: RecordsTarget, requests: pd.DataFrame, impressions: pd.DataFrame, *, start: datetime
) -> RecordCounts:
    """The experiment's decisions, impressions and clicks as records in ``target.directory`` (see the module)."""
    from abtest.experiment.events import write_impressions, write_outcomes

    times = traffic.request_times(requests, start=start)
    sink = DirectorySink(target.directory)
    sink.prepare([DECISIONS])
    decisions = move_decisions(target.router_log, sink, times)
    if decisions == 0:
        log.warning(
            "the router wrote no decisions to %s (a router version older than the decision log?): the records "
            "hold impressions and clicks only; run `mlflow run . -e router` for a router that records",
            target.router_log,
        )
    shown = write_impressions(traffic.impression_records(impressions, times), sink)
    clicks = write_outcomes(traffic.click_records(impressions, times), sink)
    sink.close()
    counts = RecordCounts(decisions=decisions, impressions=shown.written, outcomes=clicks.written)
    log.info("records in %s: %s", target.directory, counts)
    return counts


def records_readout(
    target: RecordsTarget, *, split: float, alpha: float, covariate: pd.Series, workdir: Path
) -> RecordsReadout:
    """`analyze`'s readout of the records at ``target``: the router version's plan (without one, the default plan
    at ``alpha``, said in the readout), the ingest reduction over the records' whole window, the statistics."""
    if target.plan is None:
        plan_json, where = AnalysisPlan(alpha=alpha).to_json(), f"simulate's alpha={alpha} (router has no plan)"
    else:
        plan_json, where = target.plan, f"router {target.router_name} version {target.router_version}"
    plan, plan_note, overridden = effective_plan(plan_json, primary_metric="", override_plan=False, where=where)
    return readout_of_records(
        str(target.directory),
        router_name=target.router_name,
        router_version=target.router_version,
        salt=target.salt,
        start=None,
        end=None,
        events=(),
        plan=plan,
        split=split,
        pre_period=covariate,
        workdir=workdir,
        plan_note=plan_note,
        plan_overridden=overridden,
    )


def run_experiment(
    prepared: PreparedData,
    scorer: traffic.Scorer,
    spec: ExperimentSpec,
    *,
    records: RecordsTarget,
    truth_scorer: traffic.Scorer | None = None,
) -> ExperimentOutcome:
    """Traffic over days through ``scorer``, outcomes from the environment, the records, then their readout.

    The router is called once per request, as an application calls it, and must write its decisions to
    ``records.router_log``; the records are written (:func:`write_records`) and the readout is computed from them
    (:func:`records_readout`), as `analyze` computes it. ``truth_scorer`` (default ``scorer``) scores the
    synthetic ground truth, every request forced to each arm: an unrecorded router, so that QA traffic stays out
    of the decision log.
    """
    rng = np.random.default_rng(spec.seed)
    test = prepared.test
    history = pd.concat([prepared.train, prepared.val], ignore_index=True)
    everything = pd.concat([history, test], ignore_index=True)
    requests_frame = traffic.arrivals(test, days=spec.days, users_per_day=spec.users_per_day, rng=rng)
    item_ids = np.union1d(prepared.items[ITEM_ID].to_numpy(), everything[ITEM_ID].to_numpy())
    slates = traffic.candidate_slates(
        requests_frame, test=test, rated=everything, item_ids=item_ids, n_unseen=spec.n_unseen, rng=rng
    )
    log.info(
        "%d requests from %d users over %d days, %d candidates to score",
        len(requests_frame),
        requests_frame["user_id"].nunique(),
        spec.days,
        len(slates),
    )
    shown = traffic.serve(slates, scorer, k=spec.k, per_request=True)
    truth: dict[str, float] = {}
    click_probability = None
    if spec.environment == "synthetic":
        click_model = fit_click_model(everything, prepared.items)
        click_probability = click_model.probability
        truth = traffic.counterfactual_ctr(
            slates, truth_scorer or scorer, k=spec.k, click_probability=click_probability
        )
        log.info("true CTR if every request were served by A: %.4f, by B: %.4f", truth[CONTROL], truth[TREATMENT])
    impressions = traffic.draw_outcomes(shown, spec.environment, rng=rng, click_probability=click_probability)
    user_days = traffic.user_day_table(impressions)
    covariate = traffic.pre_period_activity(history)
    counts = write_records(records, requests_frame, impressions, start=traffic.calendar_start(test))
    readout = records_readout(
        records, split=spec.split, alpha=spec.alpha, covariate=covariate, workdir=records.router_log.parent
    )
    return ExperimentOutcome(readout, impressions, user_days, records=counts, truth=truth)
