"""abtest/experiment/traffic.py: request ids sent to the router, per-request calls, the simulated calendar, and the
application's impression and click records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from abtest.experiment import traffic
from tests.fixtures.experiment import StandInRouter, item_hash_score

START = datetime(1998, 3, 1, tzinfo=UTC)


def _slates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [0, 0, 0, 1, 1, 2],
            "day": [1, 1, 1, 1, 1, 2],
            "user_id": [5, 5, 5, 6, 6, 5],
            "item_id": [1, 2, 3, 1, 4, 2],
            "logged_label": [1, 0, 1, 0, 1, 0],
            "logged": True,
        }
    )


def test_each_request_reaches_the_router_once_under_its_request_key() -> None:
    router = StandInRouter(item_hash_score, item_hash_score)
    calls: list[pd.DataFrame] = []

    def scorer(pairs, params):
        calls.append(pairs.copy())
        return router(pairs, params)

    per_request = traffic.score(_slates(), scorer, per_request=True)
    assert [call["request_id"].tolist() for call in calls] == [["sim-0"] * 3, ["sim-1"] * 2, ["sim-2"]]
    calls.clear()
    batched = traffic.score(_slates(), scorer)
    assert len(calls) == 1 and calls[0]["request_id"].tolist() == ["sim-0"] * 3 + ["sim-1"] * 2 + ["sim-2"]
    pd.testing.assert_frame_equal(per_request, batched)


def test_requests_are_spread_over_their_simulated_day_in_arrival_order() -> None:
    requests = pd.DataFrame({"request_id": [0, 1, 2, 3, 4], "day": [1, 1, 1, 2, 3], "user_id": [1, 2, 3, 1, 2]})
    times = traffic.request_times(requests, start=START)
    assert times.index.tolist() == [0, 1, 2, 3, 4]
    assert [t.date() for t in times] == [START.date()] * 3 + [(START + timedelta(days=d)).date() for d in (1, 2)]
    assert times[0] < times[1] < times[2]
    assert times[0] == START + timedelta(hours=23) / 6 and times[3] == START + timedelta(days=1, hours=11.5)
    # the last request of a day plus the click delay stays on that day
    assert (times[2] + traffic.CLICKED_AFTER).date() == START.date()


def test_calendar_starts_on_the_test_periods_first_utc_date() -> None:
    test = pd.DataFrame({"timestamp": [int(datetime(1998, 3, 1, 17, 5, tzinfo=UTC).timestamp()), 2_000_000_000]})
    assert traffic.calendar_start(test) == START


def test_impression_and_click_records_follow_what_was_shown_and_clicked() -> None:
    impressions = pd.DataFrame(
        {
            "request_id": [0, 0, 1],
            "user_id": [5, 5, 6],
            "item_id": [3, 1, 4],
            "position": [1, 2, 1],
            "click": [0, 1, 1],
        }
    )
    times = pd.Series([START, START + timedelta(hours=1)], index=[0, 1])
    shown = traffic.impression_records(impressions, times)
    assert shown.to_dict("list") == {
        "event_id": ["sim-0:0", "sim-0:1", "sim-1:0"],
        "event_time": [START + traffic.SHOWN_AFTER] * 2 + [START + timedelta(hours=1) + traffic.SHOWN_AFTER],
        "request_id": ["sim-0", "sim-0", "sim-1"],
        "user_id": [5, 5, 6],
        "item_id": [3, 1, 4],
        "position": [0, 1, 0],
    }
    clicks = traffic.click_records(impressions, times)
    assert clicks["event_id"].tolist() == ["sim-0:1:click", "sim-1:4:click"]
    assert clicks["request_id"].tolist() == ["sim-0", "sim-1"] and clicks["item_id"].tolist() == [1, 4]
    assert set(clicks["event"]) == {"click"} and np.all(clicks["value"] == 1.0)
    assert clicks["event_time"].tolist() == [START + traffic.CLICKED_AFTER, times[1] + traffic.CLICKED_AFTER]
