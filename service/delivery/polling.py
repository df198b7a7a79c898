"""When to read a job's status: once just after its predicted finish, rarely when it runs long.

Every status read is a request of the API key's budget (``gameball/budget.py``),
and at the documented limits the key carries 12 a second for the whole
group: a 1,000-record job that costs one submission and one read is 6,000
records/s, and every extra read is records not delivered. So:

* **The first read lands just after the predicted finish.**
  :class:`JobDurations` learns how long jobs take per record from the jobs
  that finished (a job much smaller than the others only as a lower bound,
  counted as large as they are: its fixed cost is not a slow rate; and one
  much larger, a burst's after a trickle's, is predicted to take no more than
  twice theirs until one ends, for the same reason). It has
  to live with censoring: a job found finished at the first read only says
  "at most this long". So the estimate tracks a quantile instead of a mean:
  it shrinks a little (0.5 %) when first reads find jobs done and grows
  (4.5 %) when one does not, which settles where ``first_read_done`` (90 %)
  of first reads find the job done: a job of steady duration costs about
  1.1 reads and is noticed 2.5 % of its duration late (with steps of 1 % and
  9 %, 4.5 %: every slot idle that much longer). Jobs in flight together are
  predicted alike and miss together, so the steps count job durations, not
  jobs (see :meth:`JobDurations.learn`): a step up for each of a batch of
  misses would overshoot, and the latency would take many jobs to decay.
  When the API slows down, the estimate follows at once (a late job was
  still running at its last read before the end: at least that long), and
  misses in a row double the step up; when it speeds up, hits run on past
  twice the ten a miss is due after and double the step down each job
  duration (up to 32x), so a sixfold speed-up is followed within ~60 jobs
  (180 with fixed 1 % steps), and meanwhile only latency is lost. Reads
  count from when they were sent, after the budget's wait: a slow answer
  says nothing of the job.
  An estimate too high costs latency for many jobs, one too low a read, so
  what is uncertain errs low: the first job's read sent late by a busy loop
  says nothing of the jobs (its planned time is used), and a first read
  held back to ``max_seconds`` that finds the job done brings the estimate
  down to what it proves. Hits stop shrinking it at the first read's floor
  (``initial_seconds``), below which no read tests anything, and jobs end out
  of order: a read sent before the last one counted adds no time.
* **Progress refines it.** A running job's status lists the records done
  (:class:`JobProgress`): two reads give a rate and so a finish, and even one
  read near the end says how little is left.
* **A job running long is read more rarely.** Without a prediction the next
  read comes after half the job's age (reads at ages 1, 1.5, 2.25, ...). A
  prediction from progress is followed, but no later than the job's age
  again (one made from little progress can be far off) and never sooner
  than a twentieth of it; no read waits longer than ``max_seconds``. A job
  stuck for the whole ``JOB_TIMEOUT_SECONDS`` (900 s) costs about 40 reads,
  not the 450 of a fixed 2-second poll.
* **Cold start.** Until a job has finished there is nothing to predict from:
  the first read comes after ``initial_seconds``, then the backoff, until
  progress shows or another job's end gives a prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.gameball.models import JobStatus


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """The tunables of status reads (see the module docstring)."""

    initial_seconds: float = 0.05
    margin_seconds: float = 0.01
    backoff: float = 0.5
    """Without a prediction, the next read comes after this fraction of the job's age."""
    max_fraction: float = 1.0
    """With one, no later than this fraction of the job's age..."""
    min_fraction: float = 0.05
    """... and no sooner than this one."""
    max_seconds: float = 30.0
    first_read_done: float = 0.9
    """The share of jobs the first read should find finished."""
    learning_rate: float = 0.05


MAX_DOUBLINGS = 3
"""A run of misses multiplies the estimate's step up by at most 2**3..."""
SHRINK_DOUBLINGS = 5
"""... a run of hits its step down by at most 2**5 (16 % a job duration)."""
_REFERENCE_FADE = 0.95
"""Per job learnt: how fast the reference size forgets a larger job."""
_LARGE = 2.0
"""A job under 1/2 of the reference size is small, one over twice it is large."""


class JobDurations:
    """Seconds per record of recent jobs, at the quantile the first read aims for."""

    __slots__ = (
        "_grown",
        "_per_record",
        "_reference",
        "_schedule",
        "_shrunk",
        "_shrunk_at",
        "generation",
    )

    def __init__(self, schedule: PollSchedule) -> None:
        self._schedule = schedule
        self._per_record: float | None = None
        self._reference = 1.0  # records of the largest recent job (see learn)
        self._shrunk_at = -math.inf
        self._shrunk = 0.0  # job durations of shrinking since the last counted miss
        self._grown = 0  # counted misses since the last hit
        self.generation = 0
        """Counts the increases: jobs predicted between two of them miss together."""

    def predict(self, records: int) -> float | None:
        """Seconds from the submission to the first read of ``records``; ``None``: no idea yet.

        A job over twice as large as the recent ones is predicted as if it were twice
        as large: what they took was mostly fixed cost, not a rate (see :meth:`learn`).
        """
        if self._per_record is None:
            return None
        counted = min(float(records), _LARGE * self._reference)
        return self._per_record * counted + self._schedule.margin_seconds

    def learn(
        self,
        records: int,
        *,
        generation: int | None,
        first_read_done: bool,
        after: float | None,
        by: float,
        planned: float | None = None,
        now: float,
    ) -> None:
        """A job of ``records`` ended ``after`` seconds from its submission (if known) and ``by``.

        ``after`` is when the last read that saw it running was sent, ``by``
        when the read that saw it ended was, ``planned`` when that read was
        due (``by`` when not told). ``after`` never overshoots, so it is what a
        miss raises the estimate to; ``by`` may, when that read came late (a
        busy loop, a short budget), and an estimate too high costs latency for
        many jobs while one too low costs a read and is raised by the next
        miss at once. So the first job, with nothing better, starts it between
        ``after`` and the earlier of ``by`` and ``planned``: a loop stalled for
        seconds at start-up must not hold every first read that long.

        ``generation`` is the one its first read was predicted with (``None``:
        it was not). Jobs in flight together are predicted alike and miss or
        hit together, so both steps count time, not jobs: the estimate grows
        once for all the jobs predicted with it, and shrinks by its step once
        per predicted job duration, however many jobs finish meanwhile. So
        about ``1 - first_read_done`` of the jobs miss, at any concurrency.
        """
        # A duration is a lower bound on the time per record only for a job as large as the
        # others: a job also has a fixed cost (queueing, set-up; the simulator's are all
        # fixed), so a small one, a resubmission's remainder say, seen running after 2 s
        # would otherwise claim 1,000-record jobs take 30 s, and the estimate, which comes
        # down 1 % per job duration, would hold every first read that late for an hour.
        # The reference is the largest recent job, fading 5 % a job: a lasting change of
        # size (a trickle of small batches after a backlog) becomes the norm in ~30 jobs,
        # or its first reads would all come a little early, two reads a job.
        previous = self._reference
        self._reference = count = max(float(records), previous * _REFERENCE_FADE)
        if self._per_record is not None and records > _LARGE * previous:
            # The mirror image: small jobs found done at their first read taught their
            # fixed cost as a rate (a one-record job read done at 0.05 s: 0.05 s a record),
            # which held a burst's 1,000-record jobs at the 30 s cap. Such a job was
            # predicted as twice the reference; that prediction is what it now teaches.
            self._per_record *= _LARGE * previous / records
        if self._per_record is None:
            upper = by if planned is None else min(by, planned)
            self._per_record = (upper if after is None else (after + upper) / 2) / count
            return
        if generation is None:  # its first read tested no prediction
            return
        rate, target = self._schedule.learning_rate, self._schedule.first_read_done
        if first_read_done:
            schedule = self._schedule
            self._grown = 0
            predicted = self._per_record * records
            if predicted > schedule.max_seconds:
                # A first read held back to max_seconds and finding the job done proves the
                # estimate too high, by how much it cannot say: at least it comes down to
                # the proof. Below the cap, a read planned before a miss raised the
                # estimate proves nothing against the raise: it stands.
                self._per_record = min(self._per_record, by / records)
                predicted = self._per_record * records
            if predicted + schedule.margin_seconds <= schedule.initial_seconds:
                # Held up to the first read's floor, it tested nothing below: shrunk on by
                # instant jobs, the estimate would dwindle to nothing (and did, to 1e-300).
                return
            span = max(min(predicted, schedule.max_seconds), 1e-6)
            # Jobs end out of order: a read sent before the last one counted adds no time
            # (a negative share once raised that dwindled estimate to 1e58 at one stroke).
            share = min(1.0, max(0.0, now - self._shrunk_at) / span)
            self._shrunk_at = max(self._shrunk_at, now)
            self._shrunk += share
            # Past twice the hits a miss is due after, the API has sped up: steps double.
            due = target / (1 - target)
            boost = 2.0 ** min(SHRINK_DOUBLINGS, max(0.0, self._shrunk - 2 * due))
            self._per_record *= (1 - rate * (1 - target) * boost) ** share
            return
        # A small job's miss says little of the full ones (its fixed cost dominates), and a
        # first read held back to max_seconds did not test a prediction past it (jobs that
        # run longer would miss for ever, and the estimate grow without end): the lower
        # bound below is all they teach.
        predicted = self._per_record * count
        testable = predicted < self._schedule.max_seconds
        if generation == self.generation and _LARGE * records >= count and testable:
            # Misses in a row (a generation each): the API has slowed down, steps double.
            self._per_record *= 1 + rate * target * 2.0 ** min(MAX_DOUBLINGS, self._grown)
            self._grown += 1
            self._shrunk = 0.0
            self.generation += 1
        if after is not None:
            self._per_record = max(self._per_record, after / count)


class JobProgress:
    """Predicts a running job's finish from the records it reported, read after read."""

    __slots__ = ("_first", "_submitted", "_total")

    def __init__(self, total: int, submitted: float) -> None:
        self._total = total
        self._submitted = submitted
        self._first: tuple[float, int] | None = None

    def eta(self, now: float, status: JobStatus) -> float | None:
        """Seconds until the job should be done, or ``None`` when nothing can be said yet.

        With one read, the rate since the submission (queue time included, so
        the answer errs late, and only the end of a job is told well); with
        two, the rate between them.
        """
        done = status.reported
        if done >= self._total:
            return 0.0  # everything reported: the terminal status is due
        if done <= 0:
            return None
        if self._first is None:
            self._first = (now, done)
            elapsed = now - self._submitted
            return (self._total - done) * elapsed / done if elapsed > 0 else None
        since, done_then = self._first
        if done <= done_then or now <= since:
            return None
        rate = (done - done_then) / (now - since)
        return (self._total - done) / rate


class JobPolls:
    """One job's status reads: when the next is due, and what the job taught."""

    __slots__ = (
        "_durations",
        "_generation",
        "_last_running",
        "_planned",
        "_progress",
        "_records",
        "_schedule",
        "_submitted",
        "reads",
    )

    def __init__(
        self, schedule: PollSchedule, durations: JobDurations, records: int, submitted: float
    ) -> None:
        self._schedule = schedule
        self._durations = durations
        self._records = records
        self._submitted = submitted
        self._progress = JobProgress(records, submitted)
        self._generation: int | None = None
        self._last_running: float | None = None
        self._planned = submitted  # when the next read is due
        self.reads = 0

    def first_delay(self) -> float:
        """Seconds from the submission to the first read."""
        predicted = self._durations.predict(self._records)
        if predicted is not None:
            self._generation = self._durations.generation
        # Capped like every read: an estimate learnt when the API was slow comes down
        # only 1 % per job duration, and must not hold a fast job for minutes.
        delay = min(
            self._schedule.max_seconds, max(self._schedule.initial_seconds, predicted or 0.0)
        )
        self._planned = self._submitted + delay
        return delay

    def running(self, asked: float, answered: float, status: JobStatus) -> float:
        """A read sent at ``asked`` found the job running: seconds from ``answered`` to the next.

        The document tells the job's state as of when it was asked for: a
        slow answer must not make the job look slower than it is, or the
        predictions drift late by every round trip.
        """
        self.reads += 1
        self._last_running = asked
        schedule = self._schedule
        age = asked - self._submitted
        eta = self._progress.eta(asked, status)
        predicted = self._durations.predict(self._records)
        if eta is not None:
            delay = min(eta + schedule.margin_seconds, schedule.max_fraction * age)
        elif predicted is not None and predicted > age:
            # No progress to go by, but jobs that finished meanwhile say when it should end.
            delay = predicted - age
        else:
            delay = schedule.backoff * age
        floor = max(schedule.initial_seconds, schedule.min_fraction * age)
        delay = min(schedule.max_seconds, max(floor, asked + delay - answered))
        self._planned = answered + delay
        return delay

    def ended(self, asked: float, *, learn: bool) -> None:
        """A read sent at ``asked`` found the job terminal; ``learn`` unless it says nothing."""
        self.reads += 1
        if not learn:
            return
        last = self._last_running
        self._durations.learn(
            self._records,
            generation=self._generation,
            first_read_done=self.reads == 1,
            after=None if last is None else last - self._submitted,
            by=asked - self._submitted,
            planned=self._planned - self._submitted,
            now=asked,
        )
