"""The API key's request budget: every request to Gameball waits its turn here.

Gameball limits each API key per resource, as a rate per second and a quota
per 30 seconds (the batch endpoints fall under "Others": 30/s and 360 per
30 s), and answers 429 past either, with no documented ``Retry-After``. The
quota is the ceiling of this service: 12 requests a second sustained, for the
whole consumer group. So the service paces its requests instead of learning
the limits from 429s:

* **One paced rate.** The tightest sustained rate of the configured windows
  (``requests / seconds``: the quota's 12/s at the documented limits, not the
  30/s rate), less :data:`HEADROOM`, times this instance's share. The budget
  paces when requests are *sent*; the API counts when they *arrive*, and a
  request held up on its way (the network, a pause of either side) lands
  next to its successors. The headroom (4 %: 14 of the quota's 360, about a
  second of the rate) absorbs that; the benchmark's simulator, pausing
  0.4-0.7 s at a time for garbage collection, met 429s with 2 %.
* **A small burst.** Up to :data:`BURST_SECONDS` of the rate may go at once
  (at least one request), and never more than every window has room for on
  top of the paced rate, so the bucket stays inside each window, fixed or
  sliding (the documentation does not say). A new budget starts with one
  token: a fresh instance paces from its first request instead of spending a
  window's quota in its first seconds.
* **The group's budget without coordination.** Every instance spends the
  share of the key proportional to the source partitions it owns
  (:meth:`Budget.set_share`, re-split at every assignment change): N replicas
  together stay within the key, and no instance needs to know how many others
  there are. An instance with no partitions keeps :data:`IDLE_SHARE` (a
  request every ~9 s at the documented limits) for its readiness credential
  check: a share of 0 would never send it. Another application using the
  same key cannot be seen from here: ``GAMEBALL_KEY_SHARE`` gives this group
  only part of the key.
* **Priorities: stop, then status, then submit, then tags.** When requests
  queue, running jobs finish (and abandoned ones stop) before new ones start:
  a submission adds work, a status read settles it, and a stop keeps an
  abandoned job from touching customers its successor owns. FIFO within a
  priority.
* **A 429 pauses everyone.** The key is throttled, not the request: nothing
  is sent until ``Retry-After`` passes, or for :data:`PAUSE_SECONDS` (the
  shortest window) when the answer has none, and the bucket restarts empty.
  The rate itself does not change: paced inside the documented limits, a 429
  is a momentary bunching, or another application on the key, which the log
  line (``api_budget_paused``, at most once a minute) points to. A retried
  request queues here again like any other. A slowdown on 429s (halving the
  rate, recovering over 30 s) was measured and dropped: at the documented
  limits neither meets a 429; against an API allowing 20/s a budget believing
  57.6/s met 40 429s in 800 requests with the pause, 22 with the slowdown,
  and delivered the same (14.6 and 14.9 requests/s).

Why no library: aiolimiter (asyncio, a leaky bucket) has a rate fixed at
construction and FIFO waiters; it would need priorities, a rate that changes
at every rebalance and the pause bolted on, which is most of this module.

:class:`Budget` is the pure logic on an injected clock (``now`` arguments),
so its tests never sleep; :class:`RequestBudget` puts it on the event loop
with one timer.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import structlog

from service.metrics import Metrics

log = structlog.get_logger(__name__)

HEADROOM = 0.04
"""The part of the tightest window's rate left unspent, for requests bunched on their way."""
BURST_SECONDS = 0.25
"""The bucket holds this many seconds of the paced rate (at least one request)."""
IDLE_SHARE = 0.01
"""What an instance owning no partitions may spend: its credential check, no more."""
PAUSE_SECONDS = 1.0
"""Nothing goes for this long after a 429 without ``Retry-After``: the shortest window."""
MAX_PAUSE_SECONDS = 60.0
"""A ``Retry-After`` longer than this (two quota windows) is cut to it: asked again then."""
LOG_INTERVAL_SECONDS = 60.0
"""At most one ``api_budget_paused`` line this often, counting the pauses since the last."""
_EPSILON = 1e-9


class Priority(IntEnum):
    """Lower goes first."""

    STOP = 0
    STATUS = 1
    SUBMIT = 2
    TAGS = 3  # behind every job request: a tag call waits, a job's records do not


PRIORITIES = {priority.name.lower(): priority for priority in Priority}
"""The client's operations (``api_requests_total{operation}``) and their priority."""


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``requests`` in any ``seconds``-long interval, for the whole API key."""

    requests: int
    seconds: float

    def __post_init__(self) -> None:
        if self.requests < 1 or self.seconds <= 0:
            raise ValueError(f"a window needs requests >= 1 and seconds > 0, not {self}")


class Budget:
    """A token bucket, a pause and the waiters by priority. Pure: time is passed in.

    A waiter is a *ticket*: :meth:`request` grants at once or returns one;
    :meth:`grant` hands tokens to waiting tickets, best priority first, and
    says how long until the next one can go.
    """

    def __init__(
        self,
        windows: Sequence[Window],
        *,
        now: float,
        key_share: float = 1.0,
        share: float = IDLE_SHARE,
    ) -> None:
        if not windows:
            raise ValueError("a budget needs at least one window")
        if not 0 < key_share <= 1:
            raise ValueError("key_share must be in (0, 1]")
        self._windows = tuple(windows)
        self._key_share = key_share
        self._tokens = 1.0
        self._updated = now  # tokens accrue from here on; in the future while paused
        self._queue: list[tuple[int, int]] = []  # (priority, ticket); lazily cleaned
        self._pending: set[int] = set()
        self._tickets = itertools.count()
        self._pace(share)

    @property
    def share(self) -> float:
        """This instance's part of the group's budget (partitions owned / partitions)."""
        return self._share

    @property
    def rate(self) -> float:
        """Requests per second this instance sends, sustained."""
        return self._rate

    @property
    def burst(self) -> float:
        """Requests that may go at once after a quiet spell."""
        return self._burst

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def set_share(self, share: float, now: float) -> None:
        """Re-split: the instance now owns ``share`` of the source partitions.

        Tokens never grow here (a bigger share only refills faster): the
        instances the partitions came from spent their part of the window.
        """
        self._refill(now)
        self._pace(share)

    def _pace(self, share: float) -> None:
        self._share = min(1.0, max(IDLE_SHARE, share))
        part = self._key_share * self._share
        windows = self._windows
        self._rate = (1 - HEADROOM) * part * min(w.requests / w.seconds for w in windows)
        # A bucket lets at most burst + rate * P through in any P seconds: each window's room.
        room = min(w.requests * part - self._rate * w.seconds for w in windows)
        self._burst = max(1.0, min(BURST_SECONDS * self._rate, room))
        self._tokens = min(self._tokens, self._burst)

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now

    def _ready(self, now: float) -> bool:
        return now >= self._updated and self._tokens >= 1 - _EPSILON

    def request(self, priority: int, now: float) -> int | None:
        """``None`` when a request may go at once; otherwise a ticket to wait with."""
        self._refill(now)
        if not self._pending and self._ready(now):
            self._tokens -= 1
            return None
        ticket = next(self._tickets)
        heapq.heappush(self._queue, (priority, ticket))
        self._pending.add(ticket)
        return ticket

    def cancel(self, ticket: int) -> None:
        """The waiter gave up (its task was cancelled)."""
        self._pending.discard(ticket)

    def grant(self, now: float) -> tuple[list[int], float | None]:
        """Tickets that may go now, best priority first; then seconds until the next could."""
        self._refill(now)
        granted: list[int] = []
        while self._queue:
            _, ticket = self._queue[0]
            if ticket not in self._pending:
                heapq.heappop(self._queue)
                continue
            if not self._ready(now):
                break
            heapq.heappop(self._queue)
            self._pending.discard(ticket)
            self._tokens -= 1
            granted.append(ticket)
        if not self._pending:
            return granted, None
        return granted, max(0.0, self._updated - now) + max(0.0, 1 - self._tokens) / self._rate

    def throttled(self, now: float, retry_after: float | None) -> float | None:
        """The API answered 429: nothing goes for a while. The seconds of a new pause, or ``None``.

        A pause already running is only extended (the answers to requests in
        flight when it began report the same excess).
        """
        self._refill(now)
        pause = PAUSE_SECONDS if retry_after is None else min(retry_after, MAX_PAUSE_SECONDS)
        resume = now + pause
        if resume <= self._updated:
            return None
        began = self._updated <= now
        self._tokens = 0.0
        self._updated = resume
        return pause if began else None


class RequestBudget:
    """The budget on the event loop: :meth:`acquire` waits for a grant; one timer wakes waiters."""

    def __init__(
        self,
        windows: Sequence[Window],
        *,
        key_share: float = 1.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._budget = Budget(windows, now=clock(), key_share=key_share)
        self._metrics = metrics
        self._futures: dict[int, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._pauses = 0  # since the last api_budget_paused line
        self._logged_at = -math.inf
        self._publish()

    @property
    def share(self) -> float:
        return self._budget.share

    def rate(self) -> float:
        return self._budget.rate

    async def acquire(self, operation: str) -> float:
        """Wait until a request for ``operation`` may be sent; return that moment (the clock's)."""
        started = self._clock()
        ticket = self._budget.request(PRIORITIES[operation], started)
        if ticket is not None:
            future = asyncio.get_running_loop().create_future()
            self._futures[ticket] = future
            self._pump()
            try:
                await future
            except asyncio.CancelledError:
                if future.cancelled():  # never granted: leave the queue
                    self._futures.pop(ticket, None)
                    self._budget.cancel(ticket)
                raise
        now = self._clock()
        if self._metrics is not None:
            self._metrics.budget_wait[operation].observe(now - started)
        return now

    def set_share(self, share: float) -> None:
        """Partitions owned / partitions of the source topics (see :meth:`Budget.set_share`)."""
        before = self._budget.share
        self._budget.set_share(share, self._clock())
        if self._budget.share != before:
            log.info(
                "api_budget_share",
                share=round(self._budget.share, 4),
                requests_per_second=round(self.rate(), 3),
            )
        self._publish()
        self._pump()

    def throttled(self, retry_after: float | None) -> None:
        """A 429 came anyway: every request waits (see :meth:`Budget.throttled`)."""
        now = self._clock()
        if self._budget.throttled(now, retry_after) is not None:
            self._pauses += 1
        if self._pauses and now - self._logged_at >= LOG_INTERVAL_SECONDS:
            log.warning(
                "api_budget_paused",
                pauses=self._pauses,
                retry_after=retry_after,
                hint="is another application using this API key? see GAMEBALL_KEY_SHARE",
            )
            self._pauses, self._logged_at = 0, now
        self._pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.api_budget_rate.set(self.rate())

    def _pump(self) -> None:
        """Grant what may go, then sleep until the next waiter could."""
        granted, wait = self._budget.grant(self._clock())
        for ticket in granted:
            future = self._futures.pop(ticket)
            if not future.done():  # cancelled as it was granted: its token is lost, safely
                future.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = (
            None if wait is None else asyncio.get_running_loop().call_later(wait, self._on_timer)
        )

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()
