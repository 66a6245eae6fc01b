"""Acting on an `analyze` readout in the Model Registry: crown the winner, or ramp the router's share for B.

Two moves, each all or nothing:

- :func:`promote_champion`: alias ``champion`` of the policies' registered model moves to the winner's version,
  the version the analysed router version bundled for that arm (its ``abtest.policy_<arm>_version`` tag), and the
  version is tagged with the analyze run, its decision and whether the move was forced.
- :func:`ramp_router`: a new router version with a larger share for B, the same salt, assignment rule, policy
  versions and analysis plan as the analysed one, and alias ``router`` on it. With the hash rule a user is in B
  when ``bucket < split * 10_000`` (ab_router/assignment.py), so raising the split only moves users from A to B.

Everything is read and checked first (:func:`plan_promotion`); only then does anything move. A registry call that
fails midway undoes what was already done (the alias is pointed back, the version tags restored). A readout that
names no winner, failed a health check or broke a guardrail is refused with its reasons unless ``force``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ab_router.arms import EXPERIMENT_ARMS, ROUTER_ALIAS, TREATMENT
from ab_router.assignment import AssignmentConfig
from abtest.evaluation.decision import NO_WINNER
from abtest.experiment.plan import AnalysisPlan
from abtest.tracking import tags
from abtest.tracking.router_bundle import RouterVersion, log_router

log = logging.getLogger(__name__)

ANALYZE_STEP = "analyze"
# The analyze run's tags promote acts on; a run without them is not a readout promote can read.
READOUT_TAGS: tuple[str, ...] = (tags.WINNER, tags.HEALTHY, tags.GUARDRAILS_HELD, tags.ROUTER_VERSION)
BOOLEAN_VALUES = ("true", "false")


class PromotionRefusedError(RuntimeError):
    """The readout does not justify the move (inconclusive, unhealthy, a guardrail broken); nothing was moved."""


@dataclass(frozen=True)
class Readout:
    """What an analyze run concluded, read from its tags."""

    run_id: str
    winner: str  # A | B | none
    healthy: bool
    guardrails_held: bool
    health_failures: str
    decision: str
    router_version: str

    def refusals(self) -> list[str]:
        """Why this readout does not justify acting on it ([] when it names a winner, healthy, guardrails held)."""
        reasons = []
        if self.winner == NO_WINNER:
            reasons.append(f"the readout is inconclusive (winner {NO_WINNER})")
        if not self.healthy:
            reasons.append(f"health checks failed ({self.health_failures or 'unnamed'})")
        if not self.guardrails_held:
            reasons.append("a guardrail did not hold its non-inferiority margin")
        return reasons


def read_readout(run: Run) -> Readout:
    """The readout of an analyze run; an error naming the run, the tag and the value when it is not one."""
    run_id, run_tags = run.info.run_id, run.data.tags
    if run_tags.get(tags.STEP) != ANALYZE_STEP:
        raise ValueError(
            f"run {run_id} is a {run_tags.get(tags.STEP, 'non-pipeline')!r} run, not an {ANALYZE_STEP!r} run"
        )
    if run.info.status != "FINISHED":
        raise ValueError(f"analyze run {run_id} is {run.info.status}, not FINISHED")
    missing = [tag for tag in READOUT_TAGS if not run_tags.get(tag)]
    if missing:
        raise ValueError(f"analyze run {run_id} has no tags {missing}; promote reads {list(READOUT_TAGS)}")
    winner = run_tags[tags.WINNER]
    if winner not in (*EXPERIMENT_ARMS, NO_WINNER):
        raise ValueError(
            f"analyze run {run_id}: tag {tags.WINNER} must be one of {[*EXPERIMENT_ARMS, NO_WINNER]}, "
            f"got {winner!r}"
        )
    for tag in (tags.HEALTHY, tags.GUARDRAILS_HELD):
        if run_tags[tag] not in BOOLEAN_VALUES:
            raise ValueError(
                f"analyze run {run_id}: tag {tag} must be one of {list(BOOLEAN_VALUES)}, got {run_tags[tag]!r}"
            )
    return Readout(
        run_id=run_id,
        winner=winner,
        healthy=run_tags[tags.HEALTHY] == "true",
        guardrails_held=run_tags[tags.GUARDRAILS_HELD] == "true",
        health_failures=run_tags.get(tags.HEALTH_FAILURES, ""),
        decision=run_tags.get(tags.DECISION, ""),
        router_version=run_tags[tags.ROUTER_VERSION],
    )


def analysed_router_name(run: Run) -> str | None:
    """The router model an analyze run read out, from its ``abtest.router_uri`` tag (``models:/<name>/<version>``);
    None when the tag is absent or names no registered version."""
    uri = run.data.tags.get(tags.ROUTER_URI, "")
    name, _, version = uri.removeprefix("models:/").rpartition("/")
    return name if uri.startswith("models:/") and name and version.isdigit() else None


def router_model_name_for(run: Run, given: str, default: str) -> str:
    """The router model to act on: ``given``, else the one the analyze run names, else ``default``; a given name
    other than the analysed one is an error naming both."""
    analysed = analysed_router_name(run)
    if given and analysed and given != analysed:
        raise ValueError(
            f"parameter router_model_name is {given!r}, but analyze run {run.info.run_id} read out router "
            f'{analysed!r} (tag {tags.ROUTER_URI}); pass router_model_name={analysed} or leave it ""'
        )
    return given or analysed or default


@dataclass(frozen=True)
class Promotion:
    """A checked move, ready to apply: what the readout says, on which router version, and what moves where."""

    readout: Readout
    router: ModelVersion  # the router version the readout analysed
    policy_model_name: str
    policy_versions: dict[str, str]  # arm -> the policy version that router version bundles
    ramp_split: float | None  # None: move champion; else the new router's share for B
    forced_over: tuple[str, ...]  # the refusals force overrode (() when not forced)

    @property
    def forced(self) -> bool:
        """Whether the move happens only because it was forced."""
        return bool(self.forced_over)

    @property
    def winner_version(self) -> str:
        """The policy version the champion alias moves to."""
        return self.policy_versions[self.readout.winner]

    def version_tags(self) -> dict[str, str]:
        """The tags the moved-to version gets: the readout it acted on, its decision, whether it was forced."""
        return {
            tags.ANALYZE_RUN: self.readout.run_id,
            tags.DECISION: tags.cut(self.readout.decision, tags.SHORT_VALUE_CHARS),
            tags.WINNER: self.readout.winner,
            tags.PROMOTION_FORCED: str(self.forced).lower(),
        }


def plan_promotion(
    client: MlflowClient,
    analyze_run: Run,
    *,
    router_model_name: str,
    ramp_split: float | None,
    force: bool,
) -> Promotion:
    """Read and check everything a move needs; raises before anything moves.

    Champion: the readout must name a winner (even forced: force cannot pick one), and be healthy with every
    guardrail held. Ramp: the readout must name B, be healthy with every guardrail held, and the analysed router
    must be the live one (alias ``router``); the new split must exceed the analysed router's, under the hash rule.
    ``force`` overrides the refusals that are judgements about the readout, never a missing or impossible target.
    """
    readout = read_readout(analyze_run)
    try:
        router = client.get_model_version(router_model_name, readout.router_version)
    except MlflowException as exc:
        raise LookupError(
            f"analyze run {readout.run_id} analysed router version {readout.router_version} of "
            f"{router_model_name!r}, which is not in the registry"
        ) from exc
    policy_model_name = router.tags.get(tags.POLICY_MODEL_NAME, "")
    policy_versions = {arm: router.tags.get(tags.policy_version(arm), "") for arm in EXPERIMENT_ARMS}
    if not policy_model_name or not all(policy_versions.values()):
        raise ValueError(
            f"router {router_model_name} version {router.version} lacks its lineage tags "
            f"({tags.POLICY_MODEL_NAME}, {[tags.policy_version(arm) for arm in EXPERIMENT_ARMS]}); "
            f"got {policy_model_name!r}, {policy_versions}"
        )
    for arm, version in policy_versions.items():
        try:
            client.get_model_version(policy_model_name, version)
        except MlflowException as exc:
            raise LookupError(
                f"policy {arm} of router version {router.version} is {policy_model_name} version {version}, "
                "which is not in the registry"
            ) from exc
    refusals = readout.refusals()
    if ramp_split is None:
        if readout.winner == NO_WINNER and force:
            raise PromotionRefusedError(
                f"analyze run {readout.run_id} names no winner: force cannot choose which version becomes "
                f"{tags.CHAMPION_ALIAS} (its decision: {readout.decision!r})"
            )
    else:
        refusals = [reason for reason in refusals if not reason.startswith("the readout is inconclusive")]
        if readout.winner != TREATMENT:
            refusals.insert(0, f"the readout names winner {readout.winner!r}, not {TREATMENT}: B is not ramped up")
        refusals += _ramp_refusals(client, router, router_model_name, ramp_split)
    if refusals and not force:
        raise PromotionRefusedError(
            f"analyze run {readout.run_id} does not justify "
            + ("promoting" if ramp_split is None else "ramping")
            + ": "
            + "; ".join(refusals)
            + f" (its decision: {readout.decision!r}); nothing was moved. Pass -P force=true to act anyway"
        )
    return Promotion(
        readout=readout,
        router=router,
        policy_model_name=policy_model_name,
        policy_versions=policy_versions,
        ramp_split=ramp_split,
        forced_over=tuple(refusals) if force else (),
    )


def _ramp_refusals(client: MlflowClient, router: ModelVersion, name: str, ramp_split: float) -> list[str]:
    """What stops a ramp of ``router`` to ``ramp_split`` that force may override (the live router moved on)."""
    assignment = assignment_of(router)
    if assignment.assignment != "hash":
        raise ValueError(
            f"router version {router.version} uses assignment {assignment.assignment!r} (a fixed 50/50 rule); "
            "only a 'hash' router can be ramped"
        )
    if not ramp_split > assignment.split:
        raise ValueError(
            f"parameter ramp_split must be larger than router version {router.version}'s split "
            f"{assignment.split} (a ramp sends more users to B), got {ramp_split}"
        )
    live = current_alias(client, name, ROUTER_ALIAS)
    if live != str(router.version):
        return [f"alias {name}@{ROUTER_ALIAS} points at version {live}, not at the analysed {router.version}"]
    return []


def assignment_of(router: ModelVersion) -> AssignmentConfig:
    """The assignment rule a router version's tags record."""
    values = {field: router.tags.get(tag) for field, tag in tags.ASSIGNMENT.items()}
    missing = [tags.ASSIGNMENT[field] for field, value in values.items() if not value]
    if missing:
        raise ValueError(f"router version {router.version} has no assignment tags {missing}")
    return AssignmentConfig(split=float(values["split"]), salt=values["salt"], assignment=values["assignment"])


def current_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``name@alias`` points at, None when the alias is not set."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


class _Undo:
    """Registry changes made so far, undone in reverse order when a later one fails."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, undo: Callable[[], None]) -> None:
        self.steps.append((what, undo))

    def run(self) -> None:
        for what, undo in reversed(self.steps):
            try:
                undo()
            except MlflowException:
                log.exception("could not undo %s; fix it by hand", what)


def _restore_alias(client: MlflowClient, name: str, alias: str, previous: str | None) -> Callable[[], None]:
    def restore() -> None:
        if previous is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, previous)
        log.info("restored %s@%s -> %s", name, alias, previous)

    return restore


def _restore_tag(
    client: MlflowClient, name: str, version: str, key: str, previous: str | None
) -> Callable[[], None]:
    def restore() -> None:
        if previous is None:
            client.delete_model_version_tag(name, version, key)
        else:
            client.set_model_version_tag(name, version, key, previous)

    return restore


@dataclass(frozen=True)
class Moved:
    """What a promotion moved: the alias, on which registered model, from which version to which."""

    model_name: str
    alias: str
    previous: str | None
    version: str
    router: RouterVersion | None = None  # the new router version of a ramp


def promote_champion(client: MlflowClient, promotion: Promotion) -> Moved:
    """Tag the winner's version with the readout and point ``champion`` at it; undone on any failure."""
    if promotion.ramp_split is not None:
        raise ValueError("promote_champion takes a champion promotion; this one ramps the router")
    name, version = promotion.policy_model_name, promotion.winner_version
    current = client.get_model_version(name, version).tags
    previous = current_alias(client, name, tags.CHAMPION_ALIAS)
    undo = _Undo()
    try:
        for key, value in promotion.version_tags().items():
            restore = _restore_tag(client, name, version, key, current.get(key))
            undo.push(f"tag {key} of {name} v{version}", restore)
            client.set_model_version_tag(name, version, key, value)
        if previous != version:
            undo.push(
                f"alias {name}@{tags.CHAMPION_ALIAS}",
                _restore_alias(client, name, tags.CHAMPION_ALIAS, previous),
            )
            client.set_registered_model_alias(name, tags.CHAMPION_ALIAS, version)
    except Exception:
        undo.run()
        raise
    log.info("alias %s@%s: %s -> %s", name, tags.CHAMPION_ALIAS, previous, version)
    return Moved(model_name=name, alias=tags.CHAMPION_ALIAS, previous=previous, version=version)


def ramp_router(client: MlflowClient, promotion: Promotion, *, router_model_name: str) -> Moved:
    """Log and register a router like the analysed one with B's larger share; alias ``router`` on it.

    On the active run (the model is logged there). Same salt, rule, policy versions and plan; the new version is
    tagged with the readout it acted on. If anything fails after the alias moved, the alias is pointed back.
    """
    if promotion.ramp_split is None:
        raise ValueError("ramp_router takes a ramp; this promotion moves champion")
    analysed = promotion.router
    assignment = assignment_of(analysed)
    plan_json = analysed.tags.get(tags.ANALYSIS_PLAN)
    ramped = AssignmentConfig(split=promotion.ramp_split, salt=assignment.salt, assignment=assignment.assignment)
    previous = current_alias(client, router_model_name, ROUTER_ALIAS)
    try:
        router = log_router(
            client,
            model_name=promotion.policy_model_name,
            router_model_name=router_model_name,
            assignment=ramped,
            plan=AnalysisPlan.from_json(plan_json) if plan_json else None,
            policy_versions=promotion.policy_versions,
            version_tags={**promotion.version_tags(), tags.RAMPED_FROM: str(analysed.version)},
        )
    except Exception:
        if current_alias(client, router_model_name, ROUTER_ALIAS) != previous:
            _restore_alias(client, router_model_name, ROUTER_ALIAS, previous)()
        raise
    return Moved(
        model_name=router_model_name, alias=ROUTER_ALIAS, previous=previous, version=router.version, router=router
    )


def promotion_summary(promotion: Promotion, moved: Moved) -> str:
    """One sentence: what moved where on which readout, and whether it was forced."""
    readout = promotion.readout
    if promotion.ramp_split is None:
        text = (
            f"{moved.model_name}@{moved.alias} -> version {moved.version} (policy {readout.winner}; was "
            f"{moved.previous or 'unset'})"
        )
    else:
        text = (
            f"{moved.model_name}@{moved.alias} -> version {moved.version}: B's share "
            f"{assignment_of(promotion.router).split} -> {promotion.ramp_split} (was version {moved.previous})"
        )
    text += f" on analyze run {readout.run_id}"
    if promotion.forced:
        text += " FORCED over: " + "; ".join(promotion.forced_over)
    return text


def promote(
    client: MlflowClient,
    analyze_run: Run,
    *,
    router_model_name: str,
    ramp_split: float | None,
    force: bool,
) -> tuple[Promotion, Moved]:
    """Check, then move: champion to the winner's version, or (``ramp_split``) a ramped router version."""
    promotion = plan_promotion(
        client, analyze_run, router_model_name=router_model_name, ramp_split=ramp_split, force=force
    )
    if promotion.forced:
        log.warning("forced over: %s", "; ".join(promotion.forced_over))
    if ramp_split is None:
        return promotion, promote_champion(client, promotion)
    return promotion, ramp_router(client, promotion, router_model_name=router_model_name)


def promote_run_tags(promotion: Promotion, moved: Moved) -> Mapping[str, str]:
    """The promote run's tags: the readout acted on, its winner, whether forced, and what moved."""
    run_tags = {
        tags.ANALYZE_RUN: promotion.readout.run_id,
        tags.WINNER: promotion.readout.winner,
        tags.PROMOTION_FORCED: str(promotion.forced).lower(),
        tags.PROMOTION: tags.cut(promotion_summary(promotion, moved)),
    }
    if moved.router is not None:
        run_tags[tags.ROUTER_VERSION] = moved.router.version
    return run_tags
