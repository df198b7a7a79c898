"""The request budget on a fake clock: inside both windows, shared, by priority, slowed by 429s."""

from __future__ import annotations

import asyncio
import bisect

import pytest

from service.gameball.budget import (
    IDLE_SHARE,
    RECOVERY_SECONDS,
    Budget,
    Priority,
    RequestBudget,
    Window,
)
from service.metrics import Metrics

DOCUMENTED = (Window(30, 1.0), Window(360, 30.0))  # Gameball's "Others": 30/s, 360 per 30 s


def most_in_any(times: list[float], seconds: float) -> int:
    """The most requests in any half-open interval [t, t + seconds): what a sliding window sees.

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


def test_a_busy_budget_stays_inside_both_windows_and_near_the_quota() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    sent = backlog(budget, 0.0, 300.0)
    assert most_in_any(sent, 30.0) <= 360
    assert most_in_any(sent, 1.0) <= 30
    # The quota, not the rate, is the ceiling: 12/s; the budget spends 96 % of it
    # (a second of its rate is left in every window for the way to the API).
    assert len(sent) / 300.0 == pytest.approx(12 * 0.96, rel=0.01)
    assert most_in_any(sent, 30.0) <= 360 - 12


def test_a_fresh_budget_paces_from_its_first_request_instead_of_bursting() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    sent = backlog(budget, 0.0, 30.0)
    # A fixed 30-s window would accept 360 in the first second; a sliding one would
    # then refuse everything for 29 s. Paced, the first second carries about 12.
    assert len([t for t in sent if t < 1.0]) <= 13
    assert len([t for t in sent if t < 10.0]) <= 120


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
    second.set_share(1.0, 120.0)
    sent += backlog(second, 120.0, 180.0)
    assert most_in_any(sent, 30.0) <= 360
    assert most_in_any(sent, 1.0) <= 30
    together = [t for t in sent if 60.0 <= t < 120.0]
    assert len(together) / 60.0 >= 12 * 0.95


def test_an_instance_without_partitions_keeps_just_enough_for_its_credential_check() -> None:
    idle = Budget(DOCUMENTED, now=0.0)
    assert idle.share == IDLE_SHARE
    sent = backlog(idle, 0.0, 60.0, Priority.STATUS)
    assert sent[0] == 0.0, "the first request (the readiness check) goes at once"
    assert 5 <= len(sent) <= 7  # then one every ~10 s


def test_when_the_budget_is_short_stops_go_before_status_reads_before_submissions() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    assert budget.request(Priority.SUBMIT, 0.0) is None  # the one token of a fresh budget
    order = {}
    for name, priority in [
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
    assert granted == ["stop-1", "status-1", "status-2", "submit-1", "submit-2"]


def test_a_waiter_that_gives_up_costs_nothing() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    assert budget.request(Priority.SUBMIT, 0.0) is None
    gone = budget.request(Priority.STOP, 0.0)
    kept = budget.request(Priority.SUBMIT, 0.0)
    assert gone is not None
    budget.cancel(gone)
    granted, wait = budget.grant(0.0)
    assert (granted, wait is not None) == ([], True)
    assert wait is not None
    granted, wait = budget.grant(wait)
    assert granted == [kept]
    assert wait is None


def test_retry_after_holds_every_request_until_it_passes() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    sent = backlog(budget, 0.0, 10.0)
    budget.throttled(10.0, retry_after=5.0, sent_at=sent[-1])
    after = backlog(budget, 10.0, 20.0)
    assert min(after) >= 15.0
    assert budget.factor == 1.0, "the server measured the excess: no slowdown on top"


def test_a_429_without_retry_after_halves_the_rate_once_and_it_recovers_additively() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    full = budget.rate(0.0)
    sent = backlog(budget, 0.0, 10.0)
    # Three requests in flight when the key ran out: all three come back 429.
    in_flight = sent[-3:]
    assert budget.throttled(10.0, retry_after=None, sent_at=in_flight[0]) is True
    assert budget.throttled(10.01, retry_after=None, sent_at=in_flight[1]) is False
    assert budget.throttled(10.02, retry_after=None, sent_at=in_flight[2]) is False
    assert budget.rate(10.02) == pytest.approx(full / 2, rel=0.01)
    # Sent within a second of the cut, the API's 1-s window may still hold the excess.
    assert budget.throttled(10.9, retry_after=None, sent_at=10.8) is False
    # Sent well after the cut and still refused: the key is still short.
    assert budget.throttled(12.0, retry_after=None, sent_at=11.5) is True
    # Halved again, from where two seconds of recovery had brought it (0.5 + 2/60).
    factor = (0.5 + 2 / 60) / 2
    assert budget.rate(12.0) == pytest.approx(full * factor)
    # Then back by a half every RECOVERY_SECONDS, linearly, to the full rate.
    assert budget.rate(12.0 + RECOVERY_SECONDS) == pytest.approx(full * (factor + 0.5))
    assert budget.rate(12.0 + 2 * RECOVERY_SECONDS) == full


def test_a_slowed_budget_sends_fewer_requests() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0)
    full = budget.rate(0.0)
    sent = backlog(budget, 0.0, 5.0)
    budget.throttled(5.0, retry_after=None, sent_at=sent[-1])
    budget.throttled(5.0, retry_after=None, sent_at=sent[-1])  # same round: no second cut
    slowed = backlog(budget, 5.0, 15.0)
    # Half the rate, recovering by a sixth in these 10 s: 0.58 of a full rate on average.
    assert 0.55 * full * 10 <= len(slowed) <= 0.61 * full * 10


def test_a_key_shared_with_another_application_gets_only_its_part() -> None:
    budget = Budget(DOCUMENTED, now=0.0, share=1.0, key_share=0.5)
    sent = backlog(budget, 0.0, 120.0)
    assert most_in_any(sent, 30.0) <= 180


def test_windows_must_allow_something() -> None:
    with pytest.raises(ValueError, match="requests >= 1"):
        Window(0, 30.0)
    with pytest.raises(ValueError, match="at least one window"):
        Budget((), now=0.0)


async def test_on_the_loop_waiters_are_woken_in_priority_order_and_the_wait_is_measured() -> None:
    metrics = Metrics()
    budget = RequestBudget((Window(50, 1.0),), metrics=metrics)  # ~49/s: 20 ms apart
    budget.set_share(1.0)
    await budget.acquire("submit")  # the first token
    order: list[str] = []

    async def send(operation: str) -> None:
        await budget.acquire(operation)
        order.append(operation)

    tasks = [asyncio.create_task(send(op)) for op in ("submit", "status", "submit", "stop")]
    await asyncio.sleep(0)  # every task reaches the queue before the first grant
    await asyncio.gather(*tasks)
    budget.close()
    assert order == ["stop", "status", "submit", "submit"]
    waited = metrics.registry.get_sample_value(
        "customer_sync_api_budget_wait_seconds_sum", {"operation": "submit"}
    )
    assert waited is not None
    assert waited > 0.02
    rate = metrics.registry.get_sample_value("customer_sync_api_budget_requests_per_second")
    assert rate == pytest.approx(budget.rate())


async def test_on_the_loop_a_cancelled_waiter_leaves_the_queue() -> None:
    budget = RequestBudget((Window(20, 1.0),))
    budget.set_share(1.0)
    await budget.acquire("submit")
    abandoned = asyncio.create_task(budget.acquire("stop"))
    await asyncio.sleep(0)
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    await asyncio.wait_for(budget.acquire("submit"), 1.0)
    budget.close()
