"""Job tracking against the simulator: every record leaves a job with exactly one verdict."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from service.delivery.jobs import JobTracker, WriteAhead
from service.delivery.offsets import Intent
from service.delivery.polling import PollSchedule
from service.delivery.records import PendingRecord
from service.gameball.budget import RequestBudget, Window
from service.gameball.client import GameballClient, RetryPolicy
from service.gameball.dialects import Endpoint
from service.gameball.models import JobState, JobStatus, result_customer
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.health import Health
from service.labels import DeadLetterReason
from service.metrics import Metrics
from tests.helpers import eventually

FAST_POLL = PollSchedule(initial_seconds=0.01, max_seconds=0.05)
_clients: list[GameballClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        await _clients.pop().aclose()


def record(customer: str, offset: int, **fields: object) -> PendingRecord:
    payload = orjson.dumps({"customerId": customer, **fields})
    return PendingRecord("t", 0, offset, 0, customer.encode(), payload, customer, payload)


def tracker_for(
    simulator: RunningSimulator,
    metrics: Metrics,
    *,
    attempts: int = 5,
    timeout: float = 30,
    poll: PollSchedule = FAST_POLL,
    owns: Callable[[list[PendingRecord]], bool] | None = None,
    budget: RequestBudget | None = None,
    write_ahead: WriteAhead | None = None,
) -> JobTracker:
    client = GameballClient(
        Endpoint(simulator.base_url),
        SecretStr("demo-api-key"),
        SecretStr("demo-secret-key"),
        metrics=metrics,
        health=Health(),
        retry=RetryPolicy(base_seconds=0.01, max_seconds=0.05),
        budget=budget,
    )
    _clients.append(client)
    return JobTracker(
        client,
        metrics,
        max_jobs_in_flight=4,
        job_timeout=timeout,
        max_submit_attempts=attempts,
        poll=poll,
        owns=owns,
        write_ahead=write_ahead,
    )


def owned_for_asks(asks: int) -> Callable[[list[PendingRecord]], bool]:
    """An ownership check that says yes ``asks`` times, then no: partitions going mid-delivery."""
    asked = 0

    def owns(_records: list[PendingRecord]) -> bool:
        nonlocal asked
        asked += 1
        return asked <= asks

    return owns


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_successes_and_per_record_failures_are_told_apart(
    simulator: RunningSimulator,
) -> None:
    metrics = Metrics()
    good = [record(f"c{i}", i, email=f"c{i}@example.com") for i in range(10)]
    bad = record("bad", 10, email="no-at-sign")
    verdicts = await tracker_for(simulator, metrics).deliver([*good, bad])
    assert sorted(r.customer_id for r in verdicts.succeeded) == sorted(r.customer_id for r in good)
    assert len(verdicts.rejected) == 1
    rejection = verdicts.rejected[0]
    assert rejection.record is bad
    assert rejection.reason is DeadLetterReason.RECORD_REJECTED
    assert rejection.error == "Invalid email address"
    assert rejection.job_id
    assert verdicts.resubmit == []
    assert count(metrics, "customer_sync_jobs_finished_total", status="completed") == 1
    assert count(metrics, "customer_sync_jobs_in_flight") == 0


async def test_a_rejected_batch_is_bisected_down_to_the_bad_records(
    simulator: RunningSimulator,
) -> None:
    metrics = Metrics()
    records = [record(f"c{i}", i) for i in range(16)]
    records[5] = record("c5", 5, tags="not-a-list")
    records[12] = record("c12", 12, dateOfBirth="yesterday")
    verdicts = await tracker_for(simulator, metrics).deliver(records)
    assert sorted(r.record.customer_id for r in verdicts.rejected) == ["c12", "c5"]
    assert all(r.reason is DeadLetterReason.RECORD_REJECTED for r in verdicts.rejected)
    assert any("tags" in r.error for r in verdicts.rejected)
    assert len(verdicts.succeeded) == 14
    # log2(16) levels at most for each bad record
    assert records[5].attempts <= 5


async def test_a_failed_job_is_retried_then_dead_lettered_as_job_failed() -> None:
    metrics = Metrics()
    with RunningSimulator(SimulatorConfig(job_failure_rate=1.0, seed=2)) as simulator:
        tracker = tracker_for(simulator, metrics, attempts=2)
        batch = [record("a", 0), record("b", 1)]
        first = await tracker.deliver(batch)
        assert sorted(r.customer_id for r in first.resubmit) == ["a", "b"]
        second = await tracker.deliver(first.resubmit)
        assert second.resubmit == []
        assert {r.reason for r in second.rejected} == {DeadLetterReason.JOB_FAILED}
        assert all(r.record.attempts == 2 for r in second.rejected)
        assert count(metrics, "customer_sync_jobs_finished_total", status="failed") == 2


async def test_a_stuck_job_is_stopped_after_the_timeout_and_resubmitted() -> None:
    metrics = Metrics()
    with RunningSimulator(SimulatorConfig(stuck_job_rate=1.0, seed=3)) as simulator:
        tracker = tracker_for(simulator, metrics, timeout=0.3)
        verdicts = await tracker.deliver([record("a", 0)])
        assert [r.customer_id for r in verdicts.resubmit] == ["a"]
        assert count(metrics, "customer_sync_jobs_finished_total", status="timed_out") == 1
        assert count(metrics, "customer_sync_api_requests_total", operation="stop", code="200") == 1
        # What the job cost, by operation: counted where the requests are sent.
        spent = {
            op: count(metrics, "customer_sync_api_requests_per_job_sum", operation=op)
            for op in ("submit", "status", "stop")
        }
        assert spent["submit"] == 1
        assert spent["stop"] == 1
        assert spent["status"] == count(
            metrics, "customer_sync_api_requests_total", operation="status", code="200"
        )


async def test_stopping_the_jobs_of_given_up_partitions_costs_their_records_no_attempt() -> None:
    metrics = Metrics()
    config = SimulatorConfig(job_duration_seconds=30, seed=4)
    with RunningSimulator(config) as simulator:
        tracker = tracker_for(simulator, metrics, attempts=1)
        mine = [record("a", 0), record("b", 1)]
        theirs = [PendingRecord("t", 1, 0, 0, b"z", b"{}", "z", b'{"customerId":"z"}')]
        kept = asyncio.create_task(tracker.deliver(mine))
        given_up = asyncio.create_task(tracker.deliver(theirs))
        await eventually(lambda: len(tracker.open_jobs()) == 2)
        [job_of_partition_1] = tracker.open_jobs({("t", 1)})

        assert await tracker.stop_jobs({("t", 1)}, timeout=5) == 1

        verdicts = await asyncio.wait_for(given_up, 10)
        # With one attempt allowed, a counted failure would have dead-lettered it.
        assert [r.customer_id for r in verdicts.resubmit] == ["z"]
        assert verdicts.rejected == []
        assert simulator.state.jobs[job_of_partition_1].state.value == "stopped"
        assert tracker.open_jobs() != [], "only partition 1's job stops"
        assert not kept.done()
        await tracker.stop_jobs(None, timeout=5)
        await asyncio.wait_for(kept, 10)
        assert tracker.open_jobs() == []


async def test_jobs_of_steady_duration_cost_about_one_status_read_each() -> None:
    metrics = Metrics()
    with RunningSimulator(SimulatorConfig(job_duration_seconds=0.2, seed=5)) as simulator:
        tracker = tracker_for(simulator, metrics, poll=PollSchedule())
        for batch in range(16):
            verdicts = await tracker.deliver([record(f"c{batch}-{i}", i) for i in range(50)])
            assert len(verdicts.succeeded) == 50
    status_reads = count(metrics, "customer_sync_api_requests_per_job_sum", operation="status")
    jobs = count(metrics, "customer_sync_api_requests_per_job_count", operation="status")
    assert jobs == 16
    # The first job has nothing to go by (a few reads); the other 15 about one each.
    assert status_reads <= 5 + 15 * 1.3


class StatusReadsHeld(RequestBudget):
    """A budget that holds every status read ``hold`` seconds: a key shared with busy peers."""

    def __init__(self, hold: float) -> None:
        super().__init__((Window(1000, 1.0),))
        self.hold = hold

    async def acquire(self, operation: str) -> float:
        if operation == "status":
            await asyncio.sleep(self.hold)
        return await super().acquire(operation)


async def test_a_status_read_held_by_the_budget_counts_from_when_it_was_sent() -> None:
    """A running job's progress is as of when the read went out, after the key's budget
    held it: counted from when it was asked for, the job looked faster than it ran, its
    predicted end came early, and a read was wasted on finding it still running."""
    metrics = Metrics()
    with RunningSimulator(SimulatorConfig(job_duration_seconds=1.0, seed=5)) as simulator:
        tracker = tracker_for(simulator, metrics, poll=PollSchedule(), budget=StatusReadsHeld(0.4))
        verdicts = await tracker.deliver([record(f"c{i}", i) for i in range(50)])
        assert len(verdicts.succeeded) == 50
    # One read finds it running and shows its progress; the next, at the end the progress
    # predicts, finds it done (three, when progress was dated 0.4 s early).
    assert count(metrics, "customer_sync_api_requests_per_job_sum", operation="status") == 2


RUNNING_DOC = {
    "status": "Running",
    "response": {
        "successful": [{"customerId": "a", "message": "ok"}, {"customerId": 7}],
        "failed": [{"customerId": "b", "error": "bad email"}],
    },
}


def test_a_running_document_is_counted_not_read() -> None:
    status = JobStatus.read(orjson.dumps(RUNNING_DOC))
    assert status.status is JobState.RUNNING
    assert status.reported == 3
    assert status.response is None  # entries skipped: only progress is used while running


def test_a_running_document_is_read_in_full_when_asked() -> None:
    status = JobStatus.read(orjson.dumps(RUNNING_DOC), entries=True)
    assert status.reported == 3
    assert status.response is not None
    assert [result_customer(e) for e in status.response.successful] == ["a", "7"]


def test_a_terminal_document_is_always_read_in_full() -> None:
    status = JobStatus.read(orjson.dumps({**RUNNING_DOC, "status": "completed"}))
    assert status.response is not None
    assert len(status.response.failed) == 1
    assert status.reported == 3


def test_a_terminal_document_reads_ids_and_states_as_leniently_as_the_model() -> None:
    # The model is pydantic in lax mode; its msgspec stand-in must not refuse what it took,
    # or a job's verdicts would be retried forever as "not a status document".
    document = {"status": "Completed", "response": {"successful": [{"customerId": 42.0}]}}
    status = JobStatus.read(orjson.dumps(document))
    assert status.status is JobState.COMPLETED
    assert status.response is not None
    assert [result_customer(e) for e in status.response.successful] == ["42"]


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"state": "completed"}', b'{"status": "completed", "response": 5}'],
)
def test_what_is_not_a_status_document_raises_value_error(content: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the API client maps any of them to a retry
        JobStatus.read(content)


async def test_a_job_created_after_its_partitions_went_is_stopped_at_once(
    simulator: RunningSimulator,
) -> None:
    # The submission is on its way when the partitions are revoked: the ledger of the
    # revocation could not name the job, so it is stopped the moment it exists.
    # Ours when taken and when the POST goes; revoked by the time it answers.
    simulator.state.update_config({"job_duration_seconds": 5.0})
    tracker = tracker_for(simulator, Metrics(), owns=owned_for_asks(2))
    records = [record(f"c{i}", i) for i in range(5)]
    delivery = asyncio.ensure_future(tracker.deliver(records))
    verdicts = await delivery
    (job,) = simulator.state.jobs.values()
    assert job.state is JobState.STOPPED
    assert verdicts.resubmit == records
    assert [r.attempts for r in records] == [0] * 5  # not the records' fault


async def test_a_submission_retrying_when_its_partitions_go_is_withdrawn_unsent(
    simulator: RunningSimulator,
) -> None:
    # Lost partitions, then a retry sent seconds later: the next owner had meanwhile
    # applied a newer change of a customer, and this older one landed after it (the
    # three-broker chaos run saw it). Every attempt asks first whether the records are ours.
    # Ours when taken and for the first attempt, then lost.
    simulator.state.update_config({"rate_limit_rate": 1.0})  # every attempt refused: a retry
    tracker = tracker_for(simulator, Metrics(), owns=owned_for_asks(2))
    records = [record(f"c{i}", i) for i in range(5)]
    verdicts = await tracker.deliver(records)
    assert simulator.state.jobs == {}
    assert simulator.state.stats()["requests"]["create"] == {"429": 1}  # the retry never went
    assert verdicts.resubmit == records
    assert [r.attempts for r in records] == [0] * 5


async def test_a_stop_the_api_never_confirms_is_logged_by_its_job_id() -> None:
    """What shutdown and revocation could not do must be in the log: which jobs still run."""
    metrics = Metrics()
    with RunningSimulator(SimulatorConfig(job_duration_seconds=30, seed=4)) as simulator:
        tracker = tracker_for(simulator, metrics)
        delivering = asyncio.create_task(tracker.deliver([record("a", 0)]))
        await eventually(lambda: len(tracker.open_jobs()) == 1)
        [job_id] = tracker.open_jobs()
    # The API is gone: the stop is retried until the deadline, then given up.
    with capture_logs() as logs:
        assert await tracker.stop_jobs(None, timeout=0.5) == 1
    [line] = [entry for entry in logs if entry["event"] == "jobs_stopped"]
    assert line["left_unstopped"] == [job_id]
    delivering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await delivering


async def test_every_post_attempt_is_written_ahead_and_a_retry_dates_the_same_intent_anew() -> None:
    """A 5xx after the job was created: the retry may create a second job, and the first
    exists already. The ledger must say so before the retry goes out, dated then."""
    written: list[tuple[Intent, float, int]] = []  # intent, its date, jobs created by then

    with RunningSimulator(SimulatorConfig(seed=5)) as simulator:

        async def write_ahead(records: list[PendingRecord], again: Intent | None) -> Intent:
            intent = again or Intent(0.0)
            intent.at = time.time()
            written.append((intent, intent.at, simulator.state.jobs_created))
            if len(written) == 1:  # the first attempt's job is created, its answer lost
                simulator.state.update_config({"server_error_rate": 1.0, "seed": 3})
            else:
                simulator.state.update_config({"server_error_rate": 0.0})
            return intent

        tracker = tracker_for(simulator, Metrics(), write_ahead=write_ahead)
        verdicts = await tracker.deliver([record("a", 0)])
        assert len(verdicts.succeeded) == 1
    assert len(written) >= 2
    assert all(intent is written[0][0] for intent, _, _ in written), "one intent, dated anew"
    first, retry = written[0], written[-1]
    assert retry[1] > first[1]
    assert retry[2] >= 1, "the retry was written ahead before the first attempt's job existed"
