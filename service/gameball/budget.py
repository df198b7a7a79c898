"""The API key's request budget: every request to Gameball waits its turn here.

Gameball limits each API key per resource, as a rate per second and a quota
per 30 seconds (the batch endpoints fall under "Others": 30/s and 360 per
30 s), and answers 429 past either, with no documented ``Retry-After``. The
quota is the ceiling of this service: 12 requests a second sustained, for the
whole consumer group. So the service budgets its requests instead of learning
the limits from 429s. Why it is built the way it is:

* **One token bucket, sized from every window.** A bucket of capacity ``c``
  refilled at ``r`` per second lets through fewer than ``c + r·P`` requests in
  any half-open interval of ``P`` seconds, wherever that interval starts. With
  ``c + r·P = A + 1`` for a whole number ``A``, that is at most ``A``. So one
  bucket with ``r = min over windows of (A + 1 - c) / P`` keeps inside every
  window at once, and inside both readings of a window: the documentation does
  not say whether the API counts in fixed windows or sliding ones, and a fixed
  window is just one of the intervals a sliding one checks. At the documented
  limits the quota (12/s) binds long before the rate (30/s); the rate window
  still bounds the burst.
* **Paced from the first request.** The burst ``c`` is a quarter of a second
  of the sustained rate (at least one request) and a new budget starts with a
  single token: a fresh instance paces at ~11.5 requests/s from its start
  instead of spending a window's quota in its first seconds, which a fixed
  30-second window would accept and a sliding one would punish for the next 30.
* **Headroom.** Each window's allowance ``A`` is the instance's part of it,
  less one second (:data:`JITTER_SECONDS`; a tenth of a window shorter than
  10 s) of its sustained rate, rounded down: 12 of the quota's 360 at the
  documented limits. The bucket paces
  when requests are *sent*; the API counts when they *arrive*, and a request
  held up on the way (the network, a server or a client pausing) lands later
  than it was paced for, next to its successors. The benchmark showed it:
  its simulator, pausing 0.4-0.7 s at a time for garbage collection, stamped
  evenly sent requests together, and 2 % of headroom (~7 requests) met two
  429s in eight runs.
* **The group's budget without coordination.** Every instance spends the
  share of the key's limits proportional to the source partitions it owns
  (:meth:`Budget.set_share`, re-split at every assignment change): N replicas
  together stay within the key's limits, and no instance needs to know how
  many others there are. An instance with no partitions keeps
  :data:`IDLE_SHARE` (one request every 10 s at the documented limits) for its
  readiness credential check; the stops of a revocation are spent before its
  share shrinks. Another application using the same key cannot be seen from
  here: ``GAMEBALL_KEY_SHARE`` gives this group only part of the key.
* **Priorities: stop, then status, then submit.** When the budget is short,
  running jobs can finish (and abandoned ones stop) before new ones start: a
  submission adds work, a status read settles it, and a stop keeps an
  abandoned job from touching customers its successor owns. FIFO within a
  priority.
* **A 429 is everyone's problem.** The key is throttled, not the request, so
  the answer slows the whole budget, never a single request's own timer: with
  ``Retry-After`` nothing is sent until it passes (the server measured the
  excess for us); without one, the rate halves (multiplicative decrease) and
  recovers additively, a halving in 30 s, so a budget that overestimates the
  key converges just below it instead of retrying in lockstep. The API's
  windows remember: for a while after a cut, requests still meet the excess
  that caused it, so a 429 cuts again only for a request sent at least the
  shortest window (1 s) after the last cut. A retried request queues here
  again like any other.

Why no library: aiolimiter (asyncio, a leaky bucket) has one window, a rate
fixed at construction and FIFO waiters; pyrate-limiter takes several windows
but fixes its rates per bucket (a re-split or a slowdown would drop the
history that keeps it safe) and has no priorities; limits counts but does
not wait. Each would need priorities, a rate that changes at run time and
429 feedback bolted on: this module is those and a token bucket.

:class:`Budget` is the pure logic, on an injected clock (``now`` arguments),
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

JITTER_SECONDS = 1.0
"""Every window keeps room for this long of the budget's own rate (see the module docstring)..."""
JITTER_SHARE = 0.1
"""... or for this share of the window, when that is less (a 1-s window)."""
BURST_SECONDS = 0.25
"""The bucket holds this many seconds of its sustained rate (at least one request)."""
IDLE_SHARE = 0.01
"""What an instance owning no partitions may spend: its credential check, no more."""
DECREASE = 0.5
"""A 429 without ``Retry-After`` multiplies the rate by this."""
MIN_FACTOR = 1 / 64
RECOVERY_SECONDS = 30.0
"""Time to recover from one decrease, additively: one quota window."""
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


def bucket(windows: Sequence[Window], share: float) -> tuple[float, float]:
    """The (capacity, requests per second) that keeps ``share`` of the key inside every window."""
    parts = [(w.requests * share, w.seconds) for w in windows]
    rate = min(part / seconds for part, seconds in parts)
    allowances = [
        (max(1, math.floor(part - rate * min(JITTER_SECONDS, seconds * JITTER_SHARE))), seconds)
        for part, seconds in parts
    ]
    sustained = min(allowance / seconds for allowance, seconds in allowances)
    capacity = max(1.0, sustained * BURST_SECONDS)
    rate = min((allowance + 1 - capacity) / seconds for allowance, seconds in allowances)
    return capacity, rate


class Budget:
    """A token bucket, a slowdown factor and the waiters, by priority. Pure: time is passed in.

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
        self._memory = min(w.seconds for w in self._windows)
        self._key_share = key_share
        self._share = self._clamp(share)
        self._capacity, self._rate = bucket(self._windows, key_share * self._share)
        self._tokens = 1.0
        self._factor = 1.0
        # Tokens accrue from here on; it lies in the future while a Retry-After holds.
        self._updated = now
        self._decreased_at = -math.inf
        self._queue: list[tuple[int, int]] = []  # (priority, ticket); lazily cleaned
        self._pending: set[int] = set()
        self._tickets = itertools.count()

    # ------------------------------------------------------------ the rate

    @property
    def share(self) -> float:
        """This instance's part of the group's budget (partitions owned / partitions)."""
        return self._share

    @property
    def factor(self) -> float:
        """1.0, or less while recovering from 429s without ``Retry-After``."""
        return self._factor

    def rate(self, now: float) -> float:
        """Requests per second this instance may send, sustained, as of ``now``."""
        self._refill(now)
        return self._rate * self._factor

    def set_share(self, share: float, now: float) -> None:
        """Re-split: the instance now owns ``share`` of the source partitions.

        Tokens never grow here (a bigger share only refills faster): the
        instances the partitions came from spent their part of the window.
        """
        self._refill(now)
        self._share = self._clamp(share)
        self._capacity, self._rate = bucket(self._windows, self._key_share * self._share)
        self._tokens = min(self._tokens, self._capacity)

    @staticmethod
    def _clamp(share: float) -> float:
        return min(1.0, max(IDLE_SHARE, share))

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed <= 0:
            return
        # Tokens at the factor of the interval's start: the lower one, so the safe side.
        self._tokens = min(self._capacity, self._tokens + elapsed * self._rate * self._factor)
        if self._factor < 1.0:
            self._factor = min(1.0, self._factor + elapsed * (1 - DECREASE) / RECOVERY_SECONDS)
        self._updated = now

    # ------------------------------------------------------------ waiting

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def request(self, priority: int, now: float) -> int | None:
        """``None`` when a request may go at once; otherwise a ticket to wait with."""
        self._refill(now)
        if not self._pending and now >= self._updated and self._tokens >= 1 - _EPSILON:
            self._tokens -= 1
            return None
        ticket = next(self._tickets)
        heapq.heappush(self._queue, (priority, ticket))
        self._pending.add(ticket)
        return ticket

    def cancel(self, ticket: int) -> None:
        """The waiter gave up (its task was cancelled)."""
        self._pending.discard(ticket)

    def refund(self, now: float) -> None:
        """A granted request was not sent after all: its token goes back."""
        self._refill(now)
        self._tokens = min(self._capacity, self._tokens + 1)

    def grant(self, now: float) -> tuple[list[int], float | None]:
        """Tickets that may go now, best priority first; then seconds until the next could."""
        self._refill(now)
        granted: list[int] = []
        queue = self._queue
        while queue:
            _, ticket = queue[0]
            if ticket not in self._pending:
                heapq.heappop(queue)
                continue
            if now < self._updated or self._tokens < 1 - _EPSILON:
                break
            heapq.heappop(queue)
            self._pending.discard(ticket)
            self._tokens -= 1
            granted.append(ticket)
        if not self._pending:
            return granted, None
        needed = max(0.0, 1 - self._tokens)
        return granted, max(0.0, self._updated - now) + needed / (self._rate * self._factor)

    # ------------------------------------------------------------ feedback

    def throttled(self, now: float, *, retry_after: float | None, sent_at: float) -> bool:
        """The API answered 429 to a request sent at ``sent_at``; return whether the rate dropped.

        With ``retry_after`` nothing goes before it passes, and the bucket
        restarts empty. Without it, the rate is cut, unless the request was
        sent before the last cut or within the shortest window after it: the
        API's window still held the excess that caused that cut.
        """
        self._refill(now)
        if retry_after is not None:
            resume = now + retry_after
            if resume > self._updated:
                self._tokens = 0.0
                self._updated = resume
            return False
        if sent_at <= self._decreased_at + self._memory:
            return False
        self._factor = max(MIN_FACTOR, self._factor * DECREASE)
        self._decreased_at = now
        self._tokens = min(self._tokens, 0.0)
        return True


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
        self._wake_at = math.inf
        self._publish()

    @property
    def share(self) -> float:
        return self._budget.share

    def rate(self) -> float:
        return self._budget.rate(self._clock())

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

    def throttled(self, retry_after: float | None, sent_at: float) -> None:
        """A 429 came anyway (see :meth:`Budget.throttled`)."""
        if self._budget.throttled(self._clock(), retry_after=retry_after, sent_at=sent_at):
            log.warning(
                "api_budget_slowed",
                factor=round(self._budget.factor, 4),
                requests_per_second=round(self.rate(), 3),
                hint="429 without Retry-After: is another application using this API key? "
                "see GAMEBALL_KEY_SHARE",
            )
        self._publish()
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
        while True:
            granted, wait = self._budget.grant(self._clock())
            refunded = False
            for ticket in granted:
                future = self._futures.pop(ticket)
                if future.done():  # cancelled after the grant was decided: not sent
                    self._budget.refund(self._clock())
                    refunded = True
                else:
                    future.set_result(None)
            if not refunded:
                break
        self._publish()
        if wait is None:
            return
        wake_at = self._clock() + wait
        if self._timer is not None and self._wake_at <= wake_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._wake_at = wake_at
        self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake_at = math.inf
        self._pump()
