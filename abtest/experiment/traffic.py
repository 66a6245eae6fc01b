"""Simulated traffic of the A/B experiment: who arrives when, what they are shown, and what they click.

Pure functions over frames; the router is passed in as a :data:`Scorer` (the loaded pyfunc's ``predict``, an HTTP
client of a served endpoint, or a stand-in in tests), so the whole experiment runs without MLflow in unit tests.

1. :func:`arrivals` - requests over days: the test period's users in the order they first appear
   (``users_per_day=0``, each user once) or ``users_per_day`` distinct users drawn per day (users may return).
2. :func:`candidate_slates` - per request, the user's logged test-period items plus ``n_unseen`` sampled items the
   user never rated.
3. :func:`serve` - the router scores every candidate (it picks the arm); the top ``k`` by score are shown. Each
   request goes to the router under its :func:`request_key` (the router's optional ``request_id`` input), once
   per request with ``per_request`` (what an application does, so the router's latency is a request's).
4. :func:`draw_outcomes` - ``replay``: a click is a logged positive (an unseen item is never clicked, which biases
   CTR against a policy that surfaces good unseen items); ``synthetic``: a ground-truth click model gives p(click)
   and clicks are drawn from it.
5. :func:`user_day_table` - per (day, user): the arm, requests, impressions, clicks: the readout's input.
6. The application's records (``ab_router.records``): :func:`request_times` puts each request on a simulated UTC
   calendar (day 1 = the test period's first date), :func:`impression_records` / :func:`click_records` are what it
   showed and what was clicked, in the writer's columns (``abtest.experiment.events``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from ab_router.arms import EXPERIMENT_ARMS
from ab_router.records import CLICK, EVENT_ID, EVENT_TIME, REQUEST_ID
from ab_router.schema import ITEM_ID, LABEL, ROUTER_OUTPUT_COLUMNS, TIMESTAMP, USER_ID

Scorer = Callable[[pd.DataFrame, Mapping[str, Any] | None], pd.DataFrame]
Environment = Literal["replay", "synthetic"]
ENVIRONMENTS: tuple[str, ...] = ("replay", "synthetic")
# The router's output columns other than the ids it echoes back (the slates carry their own request_id).
ROUTER_COLUMNS: tuple[str, ...] = tuple(
    c for c in ROUTER_OUTPUT_COLUMNS if c not in (USER_ID, ITEM_ID, REQUEST_ID)
)


def arrivals(test: pd.DataFrame, *, days: int, users_per_day: int, rng: np.random.Generator) -> pd.DataFrame:
    """Requests ``request_id, day (1-based), user_id`` over ``days`` days from the test period's users."""
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if users_per_day < 0:
        raise ValueError(f"users_per_day must be >= 0 (0 = the test period's own user order), got {users_per_day}")
    first_seen = test.groupby(USER_ID)[TIMESTAMP].min().sort_values(kind="stable")
    users = first_seen.index.to_numpy(dtype=np.int64)
    if users.size == 0:
        raise ValueError("the test split has no users; nothing to simulate")
    if users_per_day == 0:
        day = np.concatenate([np.full(len(chunk), d + 1) for d, chunk in enumerate(np.array_split(users, days))])
        user_ids = users
    else:
        per_day = min(users_per_day, users.size)
        user_ids = np.concatenate([rng.choice(users, per_day, replace=False) for _ in range(days)])
        day = np.repeat(np.arange(1, days + 1), per_day)
    return pd.DataFrame({"request_id": np.arange(user_ids.size), "day": day, USER_ID: user_ids}).astype("int64")


def candidate_slates(
    requests: pd.DataFrame,
    *,
    test: pd.DataFrame,
    rated: pd.DataFrame,
    item_ids: np.ndarray,
    n_unseen: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Per request: the user's logged test items (``logged_label`` = their label) plus ``n_unseen`` unrated ones.

    ``rated`` holds every (user_id, item_id) the user rated in any split, so "unseen" means never rated at all.
    """
    if n_unseen < 0:
        raise ValueError(f"n_unseen must be >= 0, got {n_unseen}")
    logged = {u: frame for u, frame in test[[USER_ID, ITEM_ID, LABEL]].groupby(USER_ID)}
    rated_by_user = {u: np.sort(items) for u, items in rated.groupby(USER_ID)[ITEM_ID].agg(np.unique).items()}
    catalogue = np.unique(np.asarray(item_ids, dtype=np.int64))
    parts = []
    for request_id, day, user_id in requests[["request_id", "day", USER_ID]].itertuples(index=False):
        own = logged.get(user_id)
        seen = rated_by_user.get(user_id, np.empty(0, dtype=np.int64))
        pool = catalogue[~np.isin(catalogue, seen, assume_unique=True)]
        unseen = rng.choice(pool, min(n_unseen, pool.size), replace=False)
        own_items = own[ITEM_ID].to_numpy() if own is not None else np.empty(0, dtype=np.int64)
        own_labels = own[LABEL].to_numpy() if own is not None else np.empty(0, dtype=np.int64)
        items = np.concatenate([own_items, unseen])
        parts.append(
            pd.DataFrame(
                {
                    "request_id": request_id,
                    "day": day,
                    USER_ID: user_id,
                    ITEM_ID: items,
                    "logged_label": np.concatenate([own_labels, np.zeros(unseen.size, dtype=np.int64)]),
                    "logged": np.concatenate([np.ones(own_items.size, bool), np.zeros(unseen.size, bool)]),
                }
            )
        )
    slates = pd.concat(parts, ignore_index=True)
    return slates.astype({"request_id": "int64", "day": "int64", USER_ID: "int64", ITEM_ID: "int64"})


def request_key(request_ids: pd.Series | np.ndarray) -> np.ndarray:
    """The id each simulated request goes to the router and into the records under (``sim-<request number>``)."""
    return np.array([f"sim-{int(number)}" for number in np.asarray(request_ids)], dtype=object)


def _request_bounds(request_ids: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) row ranges of each request's rows (the slates hold a request's rows together)."""
    starts = np.flatnonzero(np.r_[True, request_ids[1:] != request_ids[:-1]])
    ends = np.r_[starts[1:], len(request_ids)]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def score(
    slates: pd.DataFrame,
    scorer: Scorer,
    params: Mapping[str, Any] | None = None,
    *,
    per_request: bool = False,
) -> pd.DataFrame:
    """``slates`` with the router's columns (policy, model_version, score, bucket, cold_user, cold_item) joined.

    The router gets each row's :func:`request_key` as its ``request_id`` input; ``per_request`` calls it once per
    request (an application's traffic) instead of once for every row.
    """
    pairs = slates[[USER_ID, ITEM_ID]].reset_index(drop=True)
    pairs[REQUEST_ID] = request_key(slates["request_id"])
    if per_request and len(pairs):
        bounds = _request_bounds(slates["request_id"].to_numpy())
        routed = pd.concat([scorer(pairs.iloc[s:e], params) for s, e in bounds], ignore_index=True)
    else:
        routed = scorer(pairs, params).reset_index(drop=True)
    if len(routed) != len(pairs) or not np.array_equal(routed[USER_ID].to_numpy(), pairs[USER_ID].to_numpy()):
        raise ValueError(
            f"router returned {len(routed)} rows for {len(pairs)} pairs, or in another order; it must return one "
            "row per input row in input order"
        )
    missing = [c for c in ROUTER_COLUMNS if c not in routed.columns]
    if missing:
        raise ValueError(f"router output lacks columns {missing}; expected {list(ROUTER_COLUMNS)}")
    return pd.concat([slates.reset_index(drop=True), routed[list(ROUTER_COLUMNS)]], axis=1)


def top_k(scored: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` highest-scored candidates of each request (ties broken by item id), with their ``position``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranked = scored.sort_values(["request_id", "score", ITEM_ID], ascending=[True, False, True], kind="stable")
    ranked = ranked.assign(position=ranked.groupby("request_id").cumcount() + 1)
    return ranked[ranked["position"] <= k].reset_index(drop=True)


def serve(slates: pd.DataFrame, scorer: Scorer, *, k: int, per_request: bool = False) -> pd.DataFrame:
    """Route every request through the router and keep what it shows: one row per impression."""
    shown = top_k(score(slates, scorer, per_request=per_request), k)
    arms_per_user = shown.groupby(USER_ID)["policy"].nunique()
    if (arms_per_user > 1).any():
        raise ValueError(
            f"router assigned {int((arms_per_user > 1).sum())} users to both arms; it must be sticky per user"
        )
    unknown = set(shown["policy"].unique()) - set(EXPERIMENT_ARMS)
    if unknown:
        raise ValueError(f"router returned policies {sorted(unknown)}; expected {list(EXPERIMENT_ARMS)}")
    return shown


def draw_outcomes(
    shown: pd.DataFrame,
    environment: Environment,
    *,
    rng: np.random.Generator,
    click_probability: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Add ``p_click`` (synthetic truth; NaN in replay) and ``click`` (0/1) to each impression."""
    if environment == "replay":
        return shown.assign(p_click=np.nan, click=shown["logged_label"].to_numpy(dtype=np.int64))
    if environment == "synthetic":
        if click_probability is None:
            raise ValueError("environment 'synthetic' needs a click_probability (the ground-truth click model)")
        p_click = click_probability(shown[USER_ID].to_numpy(), shown[ITEM_ID].to_numpy())
        return shown.assign(p_click=p_click, click=(rng.random(len(shown)) < p_click).astype(np.int64))
    raise ValueError(f"environment must be one of {list(ENVIRONMENTS)}, got {environment!r}")


def counterfactual_ctr(
    slates: pd.DataFrame,
    scorer: Scorer,
    *,
    k: int,
    click_probability: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> dict[str, float]:
    """True CTR of each arm had every request been served by it: mean p(click) of its top ``k`` (synthetic only).

    Uses the router's ``force_policy`` param, so the truth comes from exactly the models the router serves.
    """
    truth = {}
    for arm in EXPERIMENT_ARMS:
        shown = top_k(score(slates, scorer, {"force_policy": arm}), k)
        truth[arm] = float(np.mean(click_probability(shown[USER_ID].to_numpy(), shown[ITEM_ID].to_numpy())))
    return truth


def user_day_table(impressions: pd.DataFrame) -> pd.DataFrame:
    """Per (day, user): ``policy``, ``requests``, ``impressions``, ``clicks``: the units the readout aggregates."""
    return (
        impressions.groupby(["day", USER_ID], sort=True)
        .agg(
            policy=("policy", "first"),
            requests=("request_id", "nunique"),
            impressions=(ITEM_ID, "size"),
            clicks=("click", "sum"),
        )
        .reset_index()
        .astype({"requests": "int64", "impressions": "int64", "clicks": "int64"})
    )


def pre_period_activity(history: pd.DataFrame) -> pd.Series:
    """CUPED covariate: each user's positives before the test period (train + val), 0 for users without history.

    Measured before assignment, so it cannot be moved by the treatment; it correlates with clicks because users who
    liked more films before tend to like more of what they are shown.
    """
    return history.groupby(USER_ID)[LABEL].sum().astype(np.float64).rename("pre_period_positives")


# The simulated calendar: requests of a day are spread over its first hours, so an impression (shown right after
# the decision) and a click (a little later) stay on the request's day.
SPREAD = timedelta(hours=23)
SHOWN_AFTER = timedelta(milliseconds=100)
CLICKED_AFTER = timedelta(seconds=30)


def calendar_start(test: pd.DataFrame) -> datetime:
    """Day 1 of the simulated calendar: the UTC date the test period starts (timestamps in Unix seconds)."""
    first = datetime.fromtimestamp(int(test[TIMESTAMP].min()), tz=UTC)
    return first.replace(hour=0, minute=0, second=0, microsecond=0)


def request_times(requests: pd.DataFrame, *, start: datetime) -> pd.Series:
    """Each request's time (indexed by ``request_id``): day ``d`` is ``start + d - 1`` days, its requests spread
    evenly over the day in arrival order."""
    ordered = requests.sort_values(["day", "request_id"], kind="stable")
    rank = ordered.groupby("day").cumcount().to_numpy()
    per_day = ordered.groupby("day")["request_id"].transform("size").to_numpy()
    spread_us = SPREAD // timedelta(microseconds=1)
    within_day = ((rank + 0.5) / per_day * spread_us).astype(np.int64)
    micros = (ordered["day"].to_numpy() - 1) * 86_400_000_000 + within_day
    times = [start + timedelta(microseconds=int(offset)) for offset in micros]
    return pd.Series(times, index=ordered["request_id"].to_numpy(), name=EVENT_TIME)


def impression_records(impressions: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
    """What the application showed, one impression record per shown row (``position`` 0-based, ids by slot)."""
    keys = request_key(impressions["request_id"])
    position = impressions["position"].to_numpy(dtype=np.int64) - 1
    return pd.DataFrame(
        {
            EVENT_ID: [f"{key}:{slot}" for key, slot in zip(keys, position, strict=True)],
            EVENT_TIME: [times[r] + SHOWN_AFTER for r in impressions["request_id"]],
            REQUEST_ID: keys,
            USER_ID: impressions[USER_ID].to_numpy(dtype=np.int64),
            ITEM_ID: impressions[ITEM_ID].to_numpy(dtype=np.int64),
            "position": position,
        }
    )


def click_records(impressions: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
    """The clicks the environment drew, one outcome record (event ``click``, value 1) per clicked impression."""
    clicked = impressions[impressions["click"].to_numpy() == 1]
    keys = request_key(clicked["request_id"])
    return pd.DataFrame(
        {
            EVENT_ID: [f"{key}:{item}:{CLICK}" for key, item in zip(keys, clicked[ITEM_ID], strict=True)],
            EVENT_TIME: [times[r] + CLICKED_AFTER for r in clicked["request_id"]],
            REQUEST_ID: keys,
            USER_ID: clicked[USER_ID].to_numpy(dtype=np.int64),
            ITEM_ID: clicked[ITEM_ID].to_numpy(dtype=np.int64),
            "event": CLICK,
            "value": 1.0,
        }
    )
