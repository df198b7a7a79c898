"""The request budget on a fake clock: paced, shared, small bursts, by priority, paused by 429s."""

from __future__ import annotations

import asyncio
import bisect

import pytest
from structlog.testing import capture_logs

from service.gameball.budget import (
    IDLE_SHARE,
    MAX_PAUSE_SECONDS,
    PAUSE_SECONDS,
    Budget,
    Priority,
    RequestBudget,
    Window,
)
from service.metrics import Metrics

DOCUMENTED = (Window(30, 1.0), Window(360, 30.0))  # Gameball's "Others": 30/s, 360 per 30 s
QUOTA_RATE = 12.0  # 360 per 30 s: the tightest sustained rate of the two


def most_in_any(times: list[float], seconds: float) -> int:
    """The most requests in any interval [t, t + seconds): what a sliding window sees.

    Every fixed window is one of those intervals, so this bounds a fixed-window count too.
    """
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + seconds) - i for i, t in enumerate(ordered)), default=0
    )


def backlog(
    budget: Budget, start: float, end: float, priority: int = Priority.SUBMIT
) -> list[float]:
    """A caller that always has a request waiting: the times the budget lets them go."""
    sent: list[float] = []
    now = start
    while now < end:
        if budget.waiting == 0 and budget.request(priority, now) is None:
            sent.append(now)
            continue
        granted, wait = budget.grant(now)
        sent.extend(now for _ in granted)
        if wait is not None and not granted:
            now += wait
    return sent


@pytest.mark.parametrize(("share", "key_share"), [(1.0, 1.0), (0.5, 1.0), (1 / 3, 0.5)])
def test_a_busy_budget_sends_the_tightest_windows_rate_times_its_share(
    share: float, key_share: float
) -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=share, key_share=key_share)
    sent = backlog(budget, 0.0, 300.0)
    # The quota (12/s), not the rate (30/s), is the ceiling; 4 % stays unspent.
    assert len(sent) / 300.0 == pytest.approx(QUOTA_RATE * 0.96 * share * key_share, rel=0.01)
    assert budget.rate == pytest.approx(QUOTA_RATE * 0.96 * share * key_share)
    assert most_in_any(sent, 30.0) <= 360 * share * key_share
    assert most_in_any(sent, 1.0) <= 30 * share * key_share


def test_a_fresh_budget_paces_from_its_first_request_instead_of_bursting() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    sent = backlog(budget, 0.0, 30.0)
    # A fixed 30-s window would accept 360 in the first second; a sliding one would
    # then refuse everything for 29 s. Paced, the first second carries about 12.
    assert len([t for t in sent if t < 1.0]) <= 13
    assert len([t for t in sent if t < 10.0]) <= 117


def test_after_a_quiet_spell_the_burst_is_a_quarter_second_of_the_rate() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    backlog(budget, 0.0, 10.0)
    sent = backlog(budget, 60.0, 61.0)  # a minute of nothing, then a backlog
    at_once = [t for t in sent if t == 60.0]
    assert len(at_once) == int(QUOTA_RATE * 0.96 * 0.25)  # 2.88 tokens: 2 at once
    assert len(sent) <= 2.88 + QUOTA_RATE * 0.96


def test_the_burst_never_overfills_a_window_the_rate_barely_fits() -> None:
    # A plan whose per-second limit binds (30/s against 3,600 per 30 s): a quarter second
    # of 28.8/s (7 requests) at once, then the paced rate, would put 35 in one second.
    windows = (Window(30, 1.0), Window(3600, 30.0))
    budget = Budget(windows, now=0.0, share=1.0)
    sent = backlog(budget, 0.0, 5.0)
    sent += backlog(budget, 20.0, 60.0)  # full again after a pause in the load
    assert most_in_any(sent, 1.0) <= 30
    assert most_in_any(sent, 30.0) <= 3600


def test_instances_splitting_the_key_by_partitions_stay_inside_it_together() -> None:
    # Six partitions: one instance owns all of them for a minute, then a second one
    # joins and each owns three; later the first leaves and the second owns all six.
    first = Budget(DOCUMENTED, now=0.0, share=1.0)
    sent = backlog(first, 0.0, 60.0)
    first.set_share(0.5, 60.0)
    second = Budget(DOCUMENTED, now=60.0)
    second.set_share(0.5, 60.0)
    halves = backlog(first, 60.0, 120.0), backlog(second, 60.0, 120.0)
    sent += halves[0] + halves[1]
    assert len(halves[0]) == pytest.approx(len(halves[1]), rel=0.05), "three partitions each"
    assert len(halves[0]) / 60.0 == pytest.approx(QUOTA_RATE * 0.96 / 2, rel=0.03)
    second.set_share(1.0, 120.0)
    sent += backlog(second, 120.0, 180.0)
    assert len([t for t in sent if t >= 120.0]) / 60.0 == pytest.approx(QUOTA_RATE * 0.96, 0.02)
    assert most_in_any(sent, 30.0) <= 360
    assert most_in_any(sent, 1.0) <= 30


def test_a_smaller_share_does_not_keep_the_bigger_shares_tokens() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    backlog(budget, 0.0, 1.0)
    budget.set_share(0.1, 10.0)  # a full bucket of the old share, cut to the new one
    assert len([t for t in backlog(budget, 10.0, 11.0) if t == 10.0]) == 1


def test_an_instance_without_partitions_keeps_just_enough_for_its_credential_check() -> None:
    idle = Budget(DOCUMENTED, now=0.0)
    assert idle.share == IDLE_SHARE
    idle.set_share(0.0, 0.0)
    assert idle.share == IDLE_SHARE
    sent = backlog(idle, 0.0, 60.0, Priority.STATUS)
    assert sent[0] == 0.0, "the first request (the readiness check) goes at once"
    assert 6 <= len(sent) <= 8  # then one every ~9 s


def test_when_the_budget_is_short_stops_go_before_status_reads_before_submissions() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    assert budget.request(Priority.SUBMIT, 0.0) is None  # the one token of a fresh budget
    order = {}
    for name, priority in [
        ("tags-1", Priority.TAGS),
        ("submit-1", Priority.SUBMIT),
        ("status-1", Priority.STATUS),
        ("submit-2", Priority.SUBMIT),
        ("stop-1", Priority.STOP),
        ("status-2", Priority.STATUS),
    ]:
        ticket = budget.request(priority, 0.0)
        assert ticket is not None
        order[ticket] = name
    granted: list[str] = []
    now = 0.0
    while len(granted) < len(order):
        tickets, wait = budget.grant(now)
        granted += [order[t] for t in tickets]
        now += wait or 0.0
    assert granted == ["stop-1", "status-1", "status-2", "submit-1", "submit-2", "tags-1"]


def test_a_waiter_that_gives_up_costs_nothing() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    assert budget.request(Priority.SUBMIT, 0.0) is None
    gone = budget.request(Priority.STOP, 0.0)
    kept = budget.request(Priority.SUBMIT, 0.0)
    assert gone is not None
    budget.cancel(gone)
    granted, wait = budget.grant(0.0)
    assert granted == []
    assert wait is not None
    granted, wait = budget.grant(wait)
    assert granted == [kept]
    assert wait is None


def test_retry_after_holds_every_request_until_it_passes_then_the_pace_resumes() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    sent = backlog(budget, 0.0, 10.0)
    assert budget.throttled(10.0, retry_after=5.0) == 5.0
    stops = backlog(budget, 10.0, 20.0, Priority.STOP)  # even the most urgent requests wait
    assert min(stops) >= 15.0
    assert len(stops) == pytest.approx(5 * budget.rate, abs=1.5), "then paced, not a burst"
    assert budget.rate == pytest.approx(len(sent) / 10.0, rel=0.02), "the rate is unchanged"


def test_a_429_without_retry_after_pauses_for_the_shortest_window() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    backlog(budget, 0.0, 10.0)
    assert budget.throttled(10.0, retry_after=None) == PAUSE_SECONDS
    # The answers to the other requests in flight report the same excess: no new pause.
    assert budget.throttled(10.05, retry_after=None) is None
    after = backlog(budget, 10.05, 15.0)
    assert min(after) >= 10.05 + PAUSE_SECONDS


def test_a_pause_is_bounded_whatever_retry_after_says() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    assert budget.throttled(0.0, retry_after=86_400.0) == MAX_PAUSE_SECONDS
    assert min(backlog(budget, 0.0, 120.0)) == pytest.approx(MAX_PAUSE_SECONDS + 1 / budget.rate)


def test_windows_must_allow_something() -> None:
    with pytest.raises(ValueError, match="requests >= 1"):
        Window(0, 30.0)
    with pytest.raises(ValueError, match="at least one window"):
        Budget((), now=0.0)


async def test_on_the_loop_waiters_are_woken_in_priority_order_and_the_wait_is_measured() -> None:
    metrics = Metrics()
    budget = RequestBudget((Window(50, 1.0),), metrics=metrics)  # 48/s: ~20 ms apart
    budget.set_share(1.0)
    await budget.acquire("submit")  # the first token
    order: list[str] = []

    async def send(operation: str) -> None:
        await budget.acquire(operation)
        order.append(operation)

    tasks = [asyncio.create_task(send(op)) for op in ("tags", "submit", "status", "submit", "stop")]
    await asyncio.sleep(0)  # every task reaches the queue before the first grant
    await asyncio.gather(*tasks)
    budget.close()
    assert order == ["stop", "status", "submit", "submit", "tags"]
    waited = metrics.registry.get_sample_value(
        "customer_sync_api_budget_wait_seconds_sum", {"operation": "submit"}
    )
    assert waited is not None
    assert waited > 0.02
    rate = metrics.registry.get_sample_value("customer_sync_api_budget_requests_per_second")
    assert rate == pytest.approx(48.0)


async def test_on_the_loop_a_429_holds_the_next_request() -> None:
    budget = RequestBudget((Window(1000, 1.0),))
    budget.set_share(1.0)
    sent = await budget.acquire("status")
    budget.throttled(retry_after=0.2)
    assert await budget.acquire("stop") - sent >= 0.2
    budget.close()


def test_a_key_throttled_for_minutes_logs_a_line_a_minute_not_one_per_pause() -> None:
    now = [0.0]
    budget = RequestBudget(DOCUMENTED, clock=lambda: now[0])
    with capture_logs() as logs:
        for _ in range(100):  # a 429 every 1.5 s for 150 s: 100 pauses
            budget.throttled(retry_after=None)
            now[0] += 1.5
    lines = [entry for entry in logs if entry["event"] == "api_budget_paused"]
    assert len(lines) == 3  # at 0 s, 60 s and 120 s
    assert [line["pauses"] for line in lines] == [1, 40, 40]


async def test_on_the_loop_a_cancelled_waiter_leaves_the_queue() -> None:
    budget = RequestBudget((Window(20, 1.0),))
    budget.set_share(1.0)
    await budget.acquire("submit")
    abandoned = asyncio.create_task(budget.acquire("stop"))
    await asyncio.sleep(0)
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    async with asyncio.timeout(1.0):
        await budget.acquire("submit")
    budget.close()
