"""When to read a job's status: once just after its predicted finish, rarely when it runs long.

Every status read is a request of the API key's budget (``gameball/budget.py``),
and at the documented limits the key carries 12 a second for the whole
group: a 1,000-record job that costs one submission and one read is 6,000
records/s, and every extra read is records not delivered. So:

* **The first read lands just after the predicted finish.**
  :class:`JobDurations` learns how long jobs take per record from the jobs
  that finished. It has to live with censoring: a job found finished at the
  first read only says "at most this long". So the estimate tracks a
  quantile instead of a mean: it shrinks a little (1 %) each time the first
  read finds the job done and grows (9 %) each time it does not, which
  settles where ``first_read_done`` (90 %) of first reads find the job done:
  a job of steady duration costs about 1.1 reads. When the API slows down,
  the estimate follows at once (a late job's own progress says how long it
  really took); when it speeds up, by 1 % a job, and only latency is lost.
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
    learning_rate: float = 0.1


class JobDurations:
    """Seconds per record of recent jobs, at the quantile the first read aims for."""

    __slots__ = ("_per_record", "_schedule")

    def __init__(self, schedule: PollSchedule) -> None:
        self._schedule = schedule
        self._per_record: float | None = None

    def predict(self, records: int) -> float | None:
        """Seconds from the submission to the first read of ``records``; ``None``: no idea yet."""
        if self._per_record is None:
            return None
        return self._per_record * records + self._schedule.margin_seconds

    def learn(
        self, records: int, *, predicted: bool, first_read_done: bool, finished: float
    ) -> None:
        """A job of ``records`` finished about ``finished`` seconds after its submission."""
        observed = finished / max(1, records)
        if self._per_record is None:
            self._per_record = observed
            return
        if not predicted:  # its first read tested no prediction
            return
        rate, target = self._schedule.learning_rate, self._schedule.first_read_done
        if first_read_done:
            self._per_record *= 1 - rate * (1 - target)
        else:
            self._per_record = max(self._per_record * (1 + rate * target), observed)


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
        "_last_running",
        "_predicted",
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
        self._predicted = False
        self._last_running: float | None = None
        self.reads = 0

    def first_delay(self) -> float:
        """Seconds from the submission to the first read."""
        predicted = self._durations.predict(self._records)
        self._predicted = predicted is not None
        return max(self._schedule.initial_seconds, predicted or 0.0)

    def running(self, now: float, status: JobStatus) -> float:
        """A read found the job still running: seconds until the next one."""
        self.reads += 1
        self._last_running = now
        schedule = self._schedule
        age = now - self._submitted
        eta = self._progress.eta(now, status)
        predicted = self._durations.predict(self._records)
        if eta is not None:
            delay = min(eta + schedule.margin_seconds, schedule.max_fraction * age)
        elif predicted is not None and predicted > age:
            # No progress to go by, but jobs that finished meanwhile say when it should end.
            delay = predicted - age
        else:
            delay = schedule.backoff * age
        floor = max(schedule.initial_seconds, schedule.min_fraction * age)
        return min(schedule.max_seconds, max(floor, delay))

    def ended(self, now: float, *, learn: bool) -> None:
        """A read found the job terminal; ``learn`` from it unless its duration says nothing."""
        self.reads += 1
        if not learn:
            return
        last = self._last_running
        # It finished between the last read that saw it running and this one.
        finished = now if last is None else (last + now) / 2
        self._durations.learn(
            self._records,
            predicted=self._predicted,
            first_read_done=self.reads == 1,
            finished=finished - self._submitted,
        )
