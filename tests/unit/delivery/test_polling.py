"""Status reads on a fake clock: about one per job of steady duration, few for a long one."""

from __future__ import annotations

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


def run_job(
    durations: JobDurations, duration: float, records: int = 1000, stuck_at: int | None = None
) -> tuple[int, float]:
    """Poll one simulated job to its end: (status reads, seconds noticed after it finished)."""
    polls = JobPolls(SCHEDULE, durations, records, submitted=0.0)
    now = polls.first_delay()
    while True:
        done = done_at(now, duration, records)
        if stuck_at is None and now >= duration:
            polls.ended(now, learn=True)
            return polls.reads, now - duration
        now += polls.running(now, status(min(done, stuck_at or records)))


def test_a_job_of_steady_duration_costs_about_one_status_read() -> None:
    durations = JobDurations(SCHEDULE)
    first, _ = run_job(durations, 2.0)
    assert first > 2, "the first job has nothing to go by"
    reads, lateness = zip(*(run_job(durations, 2.0) for _ in range(300)), strict=True)
    assert sum(reads) / len(reads) <= 1.15
    # ... and it is noticed soon after it ended (about 5 % of its duration on average).
    assert sum(lateness) / len(lateness) < 0.1


def test_the_prediction_follows_the_api_when_it_slows_down_and_when_it_speeds_up() -> None:
    durations = JobDurations(SCHEDULE)
    for _ in range(50):
        run_job(durations, 2.0)
    slow = [run_job(durations, 6.0)[0] for _ in range(50)]
    assert slow[0] <= 3, "the first slow job is found by its progress"
    assert sum(slow[5:]) / len(slow[5:]) <= 1.2
    fast = [run_job(durations, 1.0) for _ in range(300)]
    assert all(reads == 1 for reads, _ in fast[:100]), "a faster API costs no extra reads"
    assert fast[0][1] > 4.0, "only latency, at first"
    reads, lateness = zip(*fast[-100:], strict=True)
    assert sum(lateness) / len(lateness) < 0.1, "which wears off, 1 % a job"
    assert sum(reads) / len(reads) <= 1.2


def test_the_prediction_is_per_record_so_a_small_batch_is_read_sooner() -> None:
    durations = JobDurations(SCHEDULE)
    for _ in range(30):
        run_job(durations, 2.0, records=1000)
    full = durations.predict(1000)
    small = durations.predict(100)
    assert full is not None
    assert small is not None
    assert small == pytest.approx(full / 10, abs=0.02)


def test_jobs_started_before_any_finished_follow_the_first_that_does() -> None:
    durations = JobDurations(SCHEDULE)
    waiting = JobPolls(SCHEDULE, durations, 1000, submitted=0.0)
    assert waiting.first_delay() == SCHEDULE.initial_seconds  # nothing to go by yet
    run_job(durations, 2.0)  # another job, submitted at the same time, ends
    # Still queued, no progress: its next read goes where the finished job says.
    delay = waiting.running(0.05, status(0, "queued"))
    assert delay == pytest.approx(durations.predict(1000) - 0.05)  # type: ignore[operator]


def test_a_job_that_runs_long_is_read_more_and_more_rarely() -> None:
    durations = JobDurations(SCHEDULE)
    for _ in range(20):
        run_job(durations, 2.0)
    polls = JobPolls(SCHEDULE, durations, 1000, submitted=0.0)
    now, gaps = polls.first_delay(), []
    while now < 900.0:  # JOB_TIMEOUT_SECONDS: stuck halfway, as the simulator's stuck jobs are
        gap = polls.running(now, status(500))
        gaps.append(gap)
        now += gap
    assert len(gaps) <= 45  # polled every 50 ms, as before, it would be 18,000
    assert gaps == sorted(gaps), "never more often than before"
    assert max(gaps) == SCHEDULE.max_seconds


def test_a_job_reporting_everything_but_not_yet_terminal_is_not_hammered() -> None:
    polls = JobPolls(SCHEDULE, JobDurations(SCHEDULE), 1000, submitted=0.0)
    polls.first_delay()
    # The progress says "due now" at every read; the age decides how often anyway.
    assert polls.running(40.0, status(1000)) == pytest.approx(2.0)


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
