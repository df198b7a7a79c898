"""The ledger round-trips through commit metadata, fits the broker's limit, and degrades safely."""

from __future__ import annotations

import base64
import random
import time
import uuid
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from service.delivery.ledger import _varint, decode, encode
from service.delivery.offsets import Mark
from tests.helpers import marks_whose_full_ledger_is

LIMIT = 4096  # the broker's default offset.metadata.max.bytes


def job_id() -> str:
    return f"job-{uuid.uuid4()}"  # as long as the ids Gameball hands out, or longer


@settings(max_examples=200, deadline=None)
@given(
    marks=st.binary(max_size=3000),
    jobs=st.dictionaries(
        st.integers(min_value=0, max_value=249), st.text(min_size=1, max_size=60), max_size=12
    ),
)
def test_what_is_encoded_is_decoded(marks: bytes, jobs: dict[int, str]) -> None:
    text, level = encode(len(marks), jobs, marks, limit=1 << 20)
    assert level == "full"
    ledger = decode(text)
    assert ledger is not None
    assert (ledger.length, ledger.jobs, ledger.marks) == (len(marks), jobs, marks)


@settings(max_examples=100, deadline=None)
@given(
    marks=st.binary(max_size=500),
    intents=st.dictionaries(
        st.integers(min_value=0, max_value=249),
        st.integers(min_value=0, max_value=4_102_444_800_000),  # ms, up to year 2100
        max_size=12,
    ),
)
def test_intents_are_decoded_to_the_millisecond(marks: bytes, intents: dict[int, int]) -> None:
    dated = {slot: millis / 1000 for slot, millis in intents.items()}
    text, _ = encode(len(marks), {0: "job-a"}, marks, 1 << 20, dated)
    ledger = decode(text)
    assert ledger is not None
    assert (ledger.jobs, ledger.intents, ledger.marks) == ({0: "job-a"}, dated, marks)


def previous_version_ledger(length: int, jobs: dict[int, str], marks: bytes | None) -> str:
    """A ledger as the version before write-ahead wrote it: ``cs1:``, no intents section."""
    head = _varint(length) + _varint(len(jobs))
    for slot, job in sorted(jobs.items()):
        head += _varint(slot) + _varint(len(job.encode())) + job.encode()
    flag = bytes([1 if marks is not None else 2])
    raw = zlib.compress(flag + head + (marks or b""), 6)
    return "cs1:" + base64.urlsafe_b64encode(raw).decode("ascii")


def test_a_ledger_the_previous_version_wrote_still_decodes() -> None:
    marks = bytes([Mark.JOB + 3, Mark.SUCCEEDED, Mark.PENDING])
    ledger = decode(previous_version_ledger(3, {3: "job-old"}, marks))
    assert ledger is not None
    assert (ledger.length, ledger.jobs, ledger.marks, ledger.intents) == (
        3,
        {3: "job-old"},
        marks,
        {},
    )
    degraded = decode(previous_version_ledger(60_000, {3: "job-old"}, None))
    assert degraded is not None
    assert (degraded.length, degraded.jobs, degraded.marks) == (60_000, {3: "job-old"}, None)


def test_eight_intents_and_eight_jobs_in_flight_fit_the_brokers_default_limit() -> None:
    """Every batch in flight is an intent (its POST not answered yet) or a job."""
    marks, jobs = window_with_jobs_in_flight(16, 85, seed=4)
    now = time.time()
    intents = {slot: now + slot / 1000 for slot in range(8)}
    jobs = {slot: job for slot, job in jobs.items() if slot >= 8}
    text, level = encode(len(marks), jobs, marks, LIMIT, intents)
    assert level == "full"
    assert len(text) < 1000, len(text)


def test_a_window_too_big_for_the_limit_keeps_its_intents() -> None:
    rng = random.Random(5)
    marks = bytes(rng.choice((Mark.SUCCEEDED, Mark.COALESCED)) for _ in range(60_000))
    text, level = encode(len(marks), {0: job_id()}, marks, LIMIT, {1: 1_800_000_000.25})
    assert level == "jobs"
    ledger = decode(text)
    assert ledger is not None
    assert (ledger.marks, ledger.intents) == (None, {1: 1_800_000_000.25})


def test_metadata_that_is_not_a_ledger_is_ignored() -> None:
    texts = (None, "", "some other client's metadata", "cs1:not base64!", "cs1:AAAA", "cs2:AAAA")
    for text in texts:
        assert decode(text) is None


def window_with_jobs_in_flight(jobs: int, per_job: int, seed: int) -> tuple[bytes, dict[int, str]]:
    """A partition at full speed: settled records and ``jobs`` batches in flight, interleaved
    the way the batcher takes them (mostly in offset order, with coalesced records among them).
    """
    rng = random.Random(seed)
    marks = bytearray()
    for slot in range(jobs):
        for _ in range(per_job):
            marks.append(Mark.COALESCED if rng.random() < 0.3 else Mark.JOB + slot)
    marks.extend(Mark.PENDING for _ in range(200))  # buffered, not yet in a job
    return bytes(marks), {slot: job_id() for slot in range(jobs)}


def test_eight_jobs_in_flight_fit_the_brokers_default_limit() -> None:
    # 8 jobs of 1,000 records over 6 partitions: ~170 records of each job per partition.
    marks, jobs = window_with_jobs_in_flight(8, 170, seed=1)
    text, level = encode(len(marks), jobs, marks, LIMIT)
    assert level == "full"
    assert len(text) < 1500, len(text)


def test_a_hung_job_under_5000_settled_records_fits() -> None:
    rng = random.Random(2)
    marks = bytearray(Mark.JOB for _ in range(170))  # the hung job, at the watermark
    outcomes = (Mark.SUCCEEDED, Mark.COALESCED, Mark.SKIPPED, Mark.DEAD_LETTERED)
    weights = (0.6, 0.35, 0.03, 0.02)
    marks.extend(rng.choices(outcomes, weights, k=5000))
    text, level = encode(len(marks), {0: job_id()}, bytes(marks), LIMIT)
    assert level == "full"
    assert len(text) <= LIMIT, len(text)


def test_a_window_too_big_for_the_limit_keeps_its_jobs() -> None:
    rng = random.Random(3)
    marks = bytes(rng.choice((Mark.SUCCEEDED, Mark.COALESCED)) for _ in range(60_000))
    jobs = {0: job_id(), 1: job_id()}
    text, level = encode(len(marks), jobs, marks, LIMIT)
    assert level == "jobs"
    ledger = decode(text)
    assert ledger is not None
    assert (ledger.length, ledger.jobs, ledger.marks) == (60_000, jobs, None)


def test_too_many_jobs_for_the_limit_commit_no_ledger() -> None:
    jobs = {slot: job_id() * 4 for slot in range(40)}
    assert encode(10, jobs, bytes(10), limit=1024) == ("", "none")


def test_a_ledger_as_long_as_the_brokers_limit_is_not_committed_whole() -> None:
    """Apache Kafka refuses metadata as long as ``offset.metadata.max.bytes`` (4.1, measured):
    a ledger of exactly the limit would fail the whole partition's commit."""
    marks = marks_whose_full_ledger_is(LIMIT)
    text, level = encode(len(marks), {}, marks, LIMIT)
    assert level == "jobs"
    assert len(text) < LIMIT
    marks = marks_whose_full_ledger_is(LIMIT - 4)
    assert encode(len(marks), {}, marks, LIMIT)[1] == "full"
