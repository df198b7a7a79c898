"""Status reads on a fake clock: about one per job of steady duration, few for a long one."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import orjson
import pytest

from service.delivery.polling import JobDurations, JobPolls, JobProgress, PollSchedule
from service.gameball.models import JobStatus

SCHEDULE = PollSchedule()
QUEUED = 0.1  # like the simulator (and the seeds): queued for a tenth, then records one by one


def status(done: int, state: str = "running") -> JobStatus:
    entries = [{"customerId": f"c{i}", "message": "ok"} for i in range(done)]
    document = {"status": state, "response": {"successful": entries, "failed": []}}
    return JobStatus.read(orjson.dumps(document))


def done_at(age: float, duration: float, records: int) -> int:
    if age <= duration * QUEUED:
        return 0
    return min(records, int(records * (age - duration * QUEUED) / (duration * (1 - QUEUED))))


@dataclass
class Run:
    """Status reads per job, and seconds each job was noticed after it finished."""

    reads: list[int]
    late: list[float]
    end: float

    def mean_reads(self, skip: int = 0, stop: int | None = None) -> float:
        return sum(self.reads[skip:stop]) / len(self.reads[skip:stop])

    def mean_late(self, skip: int = 0) -> float:
        return sum(self.late[skip:]) / len(self.late[skip:])


def run(
    durations: JobDurations,
    duration: float,
    jobs: int,
    *,
    in_flight: int = 1,
    records: int = 1000,
    start: float = 0.0,
) -> Run:
    """``jobs`` simulated jobs, ``in_flight`` at a time (a new one as one ends), on a fake clock."""
    events: list[tuple[float, int, JobPolls, float]] = []
    order = itertools.count()
    result = Run([], [], start)
    submitted = 0

    def submit(at: float) -> None:
        nonlocal submitted
        submitted += 1
        polls = JobPolls(SCHEDULE, durations, records, submitted=at)
        heapq.heappush(events, (at + polls.first_delay(), next(order), polls, at))

    for slot in range(min(in_flight, jobs)):  # spread over a job's duration, as a stream is
        submit(start + duration * slot / in_flight)
    while events:
        now, _, polls, at = heapq.heappop(events)
        age = now - at
        if age >= duration:
            polls.ended(now, learn=True)
            result.reads.append(polls.reads)
            result.late.append(age - duration)
            result.end = now
            if submitted < jobs:
                submit(now)
            continue
        delay = polls.running(now, now, status(done_at(age, duration, records)))
        heapq.heappush(events, (now + delay, next(order), polls, at))
    return result


def test_a_job_of_steady_duration_costs_about_one_status_read() -> None:
    jobs = run(JobDurations(SCHEDULE), 2.0, 300)
    assert jobs.reads[0] > 2, "the first job has nothing to go by"
    assert jobs.mean_reads(skip=1) <= 1.15
    # ... and it is noticed soon after it ended (about 2.5 % of its duration on average).
    assert jobs.mean_late(skip=1) < 0.06


@pytest.mark.parametrize("in_flight", [4, 7, 16])
def test_so_does_a_job_among_many_in_flight_which_are_predicted_alike(in_flight: int) -> None:
    # Jobs in flight together are predicted with the same estimate and miss together:
    # counted job by job, the estimate would lurch up at every batch of misses and take
    # many jobs to come down (latency), or come down too fast (reads).
    jobs = run(JobDurations(SCHEDULE), 2.0, 100 * in_flight, in_flight=in_flight)
    assert jobs.mean_reads(skip=2 * in_flight) <= 1.15
    assert jobs.mean_late(skip=2 * in_flight) < 0.06


def test_the_prediction_follows_the_api_when_it_slows_down_and_when_it_speeds_up() -> None:
    durations = JobDurations(SCHEDULE)
    steady = run(durations, 2.0, 50)
    slow = run(durations, 6.0, 50, start=steady.end)
    assert slow.reads[0] <= 3, "the first slow job is found by its progress"
    assert slow.mean_reads(skip=5) <= 1.1, "misses in a row grow the estimate faster"
    fast = run(durations, 1.0, 300, start=slow.end)
    assert fast.mean_reads(stop=100) <= 1.1, "a faster API costs few extra reads"
    assert fast.late[0] > 4.0, "only latency, at first"
    assert fast.mean_late(skip=70) < 0.05, "which wears off within 70 jobs: hits in a row..."
    assert fast.mean_late(skip=200) < 0.03, "... shrink it faster"
    assert fast.mean_reads(skip=200) <= 1.2


def test_the_prediction_is_per_record_so_a_small_batch_is_read_sooner() -> None:
    durations = JobDurations(SCHEDULE)
    run(durations, 2.0, 30)
    full = durations.predict(1000)
    small = durations.predict(100)
    assert full is not None
    assert small is not None
    assert small == pytest.approx(full / 10, abs=0.02)


def test_jobs_started_before_any_finished_follow_the_first_that_does() -> None:
    durations = JobDurations(SCHEDULE)
    waiting = JobPolls(SCHEDULE, durations, 1000, submitted=0.0)
    assert waiting.first_delay() == SCHEDULE.initial_seconds  # nothing to go by yet
    run(durations, 2.0, 1)  # another job, submitted at the same time, ends
    # Still queued, no progress: its next read goes where the finished job says.
    delay = waiting.running(0.05, 0.05, status(0, "queued"))
    assert delay == pytest.approx(durations.predict(1000) - 0.05)  # type: ignore[operator]


def test_a_job_that_runs_long_is_read_more_and_more_rarely() -> None:
    durations = JobDurations(SCHEDULE)
    run(durations, 2.0, 20)
    polls = JobPolls(SCHEDULE, durations, 1000, submitted=0.0)
    now, gaps = polls.first_delay(), []
    while now < 900.0:  # JOB_TIMEOUT_SECONDS: stuck halfway, as the simulator's stuck jobs are
        gap = polls.running(now, now, status(500))
        gaps.append(gap)
        now += gap
    assert len(gaps) <= 45  # polled every 50 ms, as before, it would be 18,000
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps)), "never more often than before"
    assert max(gaps) == SCHEDULE.max_seconds


def test_no_first_read_waits_longer_than_the_longest_read_gap() -> None:
    # Jobs that took minutes teach minutes; the next one may be quick, and the
    # estimate comes down only a little per job, so its first read is capped too.
    durations = JobDurations(SCHEDULE)
    run(durations, 300.0, 3)
    predicted = durations.predict(1000)
    assert predicted is not None
    assert predicted > 2 * SCHEDULE.max_seconds
    assert JobPolls(SCHEDULE, durations, 1000, submitted=0.0).first_delay() == SCHEDULE.max_seconds


def test_a_job_reporting_everything_but_not_yet_terminal_is_not_hammered() -> None:
    polls = JobPolls(SCHEDULE, JobDurations(SCHEDULE), 1000, submitted=0.0)
    polls.first_delay()
    # The progress says "due now" at every read; the age decides how often anyway.
    assert polls.running(40.0, 40.0, status(1000)) == pytest.approx(2.0)


def test_progress_predicts_the_finish_from_one_read_near_the_end_and_from_two_anywhere() -> None:
    progress = JobProgress(total=1000, submitted=0.0)
    assert progress.eta(0.05, status(0, "queued")) is None
    # One read: the rate since the submission (queue time included, so it errs late).
    one = progress.eta(1.9, status(944))
    assert one == pytest.approx(56 * 1.9 / 944)
    # Two reads: the rate between them. 250 more records in 0.05 s... say 2,500/s.
    two = JobProgress(total=1000, submitted=0.0)
    two.eta(0.125, status(150))
    assert two.eta(0.225, status(400)) == pytest.approx(600 / 2500)
    assert two.eta(0.3, status(1000)) == 0.0  # everything reported: read soon


def test_a_small_job_of_an_api_with_fixed_job_times_does_not_stall_the_full_ones() -> None:
    """Seen on Apache Kafka after a rebalance: a job carrying a revoked batch's remainder
    (70 records) ran the simulator's fixed 2 s; counted per record, it put the next
    1,000-record jobs' first reads 27 s out, and they stayed there."""
    durations = JobDurations(SCHEDULE)
    steady = run(durations, 2.0, 30)
    # Read soon (predicted per record), found running: a miss, and the last read seeing it
    # running came late in its 2 s.
    small = run(durations, 2.0, 3, records=70, start=steady.end)
    full = durations.predict(1000)
    assert full is not None
    assert full < 2.5
    jobs = run(durations, 2.0, 30, start=small.end)
    assert jobs.mean_reads() <= 1.15
    assert jobs.mean_late() < 0.1


def test_a_lasting_change_to_smaller_jobs_becomes_the_norm() -> None:
    """Light load after a backlog, on an API whose jobs take time per record: the small jobs
    are not remainders to discount for long, or every first read comes a little early."""
    durations = JobDurations(SCHEDULE)
    full = run(durations, 2.0, 30)
    small = run(durations, 0.4, 200, records=200, start=full.end)
    assert small.mean_reads(skip=60) <= 1.15
    assert small.mean_late(skip=60) < 0.05


def test_jobs_finished_before_every_first_read_for_hours_keep_being_read_once() -> None:
    """The backlog benchmark's API: jobs done before any read. Every first read is a hit, so
    the run of hits never ends; the step it doubles stays bounded (it once overflowed
    after ~1,040 jobs, and the job's tracking died with it)."""
    durations = JobDurations(SCHEDULE)
    jobs = run(durations, 0.001, 5000, in_flight=8)
    assert jobs.mean_reads(skip=8) == 1
    assert max(jobs.late[-1000:]) <= SCHEDULE.initial_seconds


def test_jobs_longer_than_the_longest_read_gap_do_not_grow_the_estimate_without_end() -> None:
    """An API whose jobs take longer than max_seconds, for hours: every first read (held back
    to max_seconds) misses. Those misses test no prediction, so they grow nothing; the
    estimate once overflowed (a step doubling in a run of misses) after ~2,300 of them."""
    durations = JobDurations(SCHEDULE)
    for job in range(5000):
        at = 100.0 * job
        durations.learn(1000, generation=None, first_read_done=True, after=None, by=1.0, now=at)
        durations.learn(
            1000,
            generation=durations.generation,
            first_read_done=False,
            after=45.0,
            by=60.0,
            now=at,
        )
    predicted = durations.predict(1000)
    assert predicted is not None
    assert predicted <= 45.0 + SCHEDULE.margin_seconds  # what the reads showed, no more


def test_a_first_read_sent_late_by_a_stalled_loop_does_not_hold_the_next_jobs() -> None:
    """Seen in the backlog benchmark: instant jobs read ~20 s after their submission, for
    half an hour. An estimate too high comes down slowly; the first job's read, sent late by
    a busy loop, must not set it."""
    durations = JobDurations(SCHEDULE)
    first = JobPolls(SCHEDULE, durations, 1000, submitted=0.0)
    first.first_delay()
    first.ended(18.0, learn=True)  # due at 0.05 s, sent at 18 s
    jobs = run(durations, 0.02, 200, in_flight=16, start=18.0)
    assert jobs.mean_late() < 0.1
    assert jobs.mean_reads() <= 1.2


def test_an_api_that_sped_up_from_minutes_to_an_instant_is_followed_within_minutes() -> None:
    """Jobs of 5 minutes, then instant ones: every first read (held back to max_seconds)
    finds the job done. Those hits prove the estimate too high and bring it down to what
    they prove, and the doubled steps do the rest."""
    durations = JobDurations(SCHEDULE)
    slow = run(durations, 300.0, 20)
    fast = run(durations, 0.02, 3000, in_flight=16, start=slow.end)
    assert fast.mean_late(skip=1000) < 0.05
    assert fast.end - slow.end < 900


def hit(durations: JobDurations, *, by: float, now: float, generation: int | None = None) -> None:
    """A first read sent ``by`` seconds after its 1,000-record job's submission found it done."""
    durations.learn(
        1000,
        generation=durations.generation if generation is None else generation,
        first_read_done=True,
        after=None,
        by=by,
        now=now,
    )


def test_instant_jobs_answered_out_of_order_leave_the_estimate_alone() -> None:
    """The cause of the backlog benchmark's half hour of 20-30 s first reads: instant jobs,
    every first read a hit, shrank the estimate to 1e-300; then a read sent before the last
    one counted (jobs end out of order) gave a negative share of time, and one step raised
    the estimate to 1e58 seconds per record."""
    durations = JobDurations(SCHEDULE)
    jobs = run(durations, 0.001, 3000, in_flight=8)
    floor = durations.predict(1000)
    assert floor is not None
    # Hits at the first read's floor test nothing below it: the estimate stops there (within
    # the last step down).
    assert floor >= 0.8 * SCHEDULE.initial_seconds
    earlier = jobs.end - 0.03
    hit(durations, by=0.05, now=earlier)
    assert durations.predict(1000) == pytest.approx(floor)


def test_a_read_sent_before_the_last_one_counted_adds_no_time() -> None:
    durations = JobDurations(SCHEDULE)
    steady = run(durations, 2.0, 50)
    before = durations.predict(1000)
    hit(durations, by=2.1, now=steady.end - 100.0)
    assert durations.predict(1000) == pytest.approx(before)


def test_a_hit_read_at_an_earlier_estimate_does_not_undo_a_miss() -> None:
    """Jobs in flight together were predicted alike: when one misses and raises the
    estimate, the others' first reads, planned before the raise, finding their jobs done
    prove nothing against it (they did bring it back down, and the next jobs missed too)."""
    durations = JobDurations(SCHEDULE)
    steady = run(durations, 2.0, 50)
    planned = durations.predict(1000)
    assert planned is not None
    generation = durations.generation
    durations.learn(
        1000,
        generation=generation,
        first_read_done=False,
        after=planned,
        by=planned + 0.3,
        now=steady.end + planned + 0.3,
    )
    raised = durations.predict(1000)
    assert raised is not None
    assert raised > planned
    hit(durations, by=planned, now=steady.end + planned + 0.31, generation=generation)
    assert durations.predict(1000) == pytest.approx(raised, rel=0.01)


@pytest.mark.parametrize("small_jobs", [1, 300])
def test_a_burst_after_one_record_jobs_is_not_held_by_their_fixed_cost(small_jobs: int) -> None:
    """Seen in the light-load benchmark: a one-record first job, read done at 0.05 s, taught
    0.05 s a record, and the next jobs' (instant, 360 records) first reads came 18 s out;
    after a trickle of such jobs, a burst's full ones waited the 30 s cap, 16 at a time. A
    small job's duration is mostly fixed cost: a much larger job is predicted to take at most
    twice what the jobs it was learnt from took, until one shows it takes longer."""
    durations = JobDurations(SCHEDULE)
    trickle = run(durations, 0.02, small_jobs, records=1)
    burst = run(durations, 0.5, 300, in_flight=16, start=trickle.end)
    assert max(burst.late) < 0.5  # was 29.5 s, 16 jobs at a time
    assert burst.mean_late() < 0.15  # then the misses in a row overshoot a little, as ever
    assert burst.mean_reads(skip=32) <= 1.2
