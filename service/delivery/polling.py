"""When to read a job's status: once just after its expected end, rarely when it runs long.

Every status read spends the API key's budget (``gameball/budget.py``), so a
job should cost one read, sent just after it ended. :class:`JobDurations`
holds one number, the expected duration of a job, always within
``[initial_seconds, max_seconds]``, and a job's first read is sent that long
after its submission. When that read finds the job still running (a miss)
the estimate grows to ``up`` times what that job was predicted with; when it
finds the job ended (a hit) it shrinks to ``down`` times that. Both steps are
taken from the job's own prediction, not from the current estimate, so jobs
in flight together, predicted alike, move it once, not once each; and a hit
predicted before a raise (those jobs ended sooner than the one that missed)
does not take the raise back. So the estimate moves a step per job duration
at any concurrency. With jobs of steady duration it settles where a round
of misses comes every ``ln(up) / ln(1/down)`` (~10) job durations: ~1.1
reads a job, each noticed ~5 % of its duration late. With durations that
vary it sits at the slow end of them: ~1.02 reads, noticed later by about
the spread. A slowdown is followed within a few rounds (10 % each); a
speed-up costs only latency, 1 % a round.

Before any job has ended there is nothing to go by: first reads come after
``initial_seconds``, and the first job to end starts the estimate between
the last read that saw it running and the one that saw it end.

Later reads follow the job's progress where the status tells it (the records
reported so far: from one read the rate since the submission, from two the
rate between them), else the estimate, else half the job's age. No read
comes later than the job's age again (a prediction from little progress can
be far off), none sooner than a twentieth of it, and none more than
``max_seconds`` out: a job stuck for ``JOB_TIMEOUT_SECONDS`` costs ~40 reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.gameball.models import JobStatus


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """The tunables of status reads (see the module docstring)."""

    initial_seconds: float = 0.05
    """The shortest wait before any read, and the estimate's floor (the first before a job ends)."""
    max_seconds: float = 30.0
    """The longest wait before any read, and the estimate's cap."""
    up: float = 1.1
    """A first read that finds the job running raises the estimate to this times its own."""
    down: float = 0.99
    """One that finds it ended lowers it to this times its own."""


class JobDurations:
    """The expected duration of a job, clamped within the schedule's bounds."""

    __slots__ = ("_schedule", "expected")

    def __init__(self, schedule: PollSchedule) -> None:
        self._schedule = schedule
        self.expected: float | None = None
        """``None`` until a job has ended: then there is nothing to go by."""

    def clamp(self, seconds: float) -> float:
        """``seconds`` within the schedule's bounds; not a number (NaN) is the floor."""
        return min(self._schedule.max_seconds, max(self._schedule.initial_seconds, seconds))

    def learn(self, predicted: float, *, hit: bool) -> None:
        """A job's first read, sent ``predicted`` seconds after its submission, hit or missed."""
        if self.expected is None:
            return
        if not hit:
            self.expected = max(self.expected, self.clamp(predicted * self._schedule.up))
        elif predicted >= self.expected:  # a hit planned before a raise says nothing against it
            self.expected = min(self.expected, self.clamp(predicted * self._schedule.down))

    def first(self, lasted: float) -> None:
        """The first job to end lasted about ``lasted`` seconds: the estimate starts there."""
        if self.expected is None:
            self.expected = self.clamp(lasted)


class JobPolls:
    """One job's status reads: when the next is due, and what the job taught."""

    __slots__ = (
        "_due",
        "_durations",
        "_first",
        "_predicted",
        "_records",
        "_running",
        "_submitted",
        "reads",
    )

    def __init__(self, durations: JobDurations, records: int, submitted: float) -> None:
        self._durations = durations
        self._records = records
        self._submitted = submitted
        self._predicted = durations.expected  # what the first read tests (None: nothing)
        self._due = submitted  # when the next read is due
        self._running: float | None = None  # the age at which a read last saw it running
        self._first: tuple[float, int] | None = None  # the first read that showed progress
        self.reads = 0

    def first_delay(self) -> float:
        """Seconds from the submission to the first read."""
        self._predicted = self._durations.expected
        delay = self._durations.clamp(self._predicted or 0.0)
        self._due = self._submitted + delay
        return delay

    def running(self, asked: float, answered: float, status: JobStatus) -> float:
        """A read sent at ``asked`` found the job running: seconds from ``answered`` to the next.

        The status is as of when it was asked for, so ages count from then:
        a slow answer must not make the job look slower than it is.
        """
        self.reads += 1
        if self.reads == 1 and self._predicted is not None:
            self._durations.learn(self._predicted, hit=False)
        age = self._running = asked - self._submitted
        eta = self._eta(asked, status.reported, age)
        expected = self._durations.expected
        if eta is not None:
            delay = min(eta, age)
        elif expected is not None and expected > age:
            delay = expected - age
        else:
            delay = age / 2
        floor = max(self._durations.clamp(0.0), age / 20)
        delay = self._durations.clamp(max(floor, asked + delay - answered))
        self._due = answered + delay
        return delay

    def ended(self, asked: float, *, learn: bool) -> None:
        """A read sent at ``asked`` found the job terminal; ``learn`` unless it says nothing."""
        self.reads += 1
        if not learn:
            return
        if self.reads == 1 and self._predicted is not None:
            self._durations.learn(self._predicted, hit=True)
        # Ended by when that read was due: one sent late by a busy loop says nothing more.
        by = min(asked, self._due) - self._submitted
        self._durations.first(by if self._running is None else (self._running + by) / 2)

    def _eta(self, now: float, done: int, age: float) -> float | None:
        """Seconds until the job should end by its progress, ``None`` when it shows none."""
        if done >= self._records:
            return 0.0  # everything reported: the terminal status is due
        if done <= 0 or age <= 0:
            return None
        if self._first is None:
            self._first = (now, done)
            return (self._records - done) * age / done  # queue time included: errs late
        since, done_then = self._first
        if done <= done_then or now <= since:
            return None
        return (self._records - done) * (now - since) / (done - done_then)
