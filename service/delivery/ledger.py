"""The ledger: a partition's window packed into its offset commit's metadata, and back.

An offset commit may carry a string per partition (``OffsetCommitRequest``'s
metadata, kept by the group coordinator with the offset, shorter than the
broker's ``offset.metadata.max.bytes``, 4,096 by default: Apache Kafka 4.1
refuses a string of exactly that length with ``OFFSET_METADATA_TOO_LARGE``,
so ``limit`` here is that setting and the ledger stays below it). The service puts there what
the committed offset alone cannot say (see ``offsets.py``): one mark per
offset from the committed one up to the last consumed one (settled and how,
pending, or carried by a job still in flight), and the ids of those jobs. A
new owner reads it on assignment (``takeover.py``) and does not redo what was
settled, nor submit anything before the jobs are resolved. The idea is
Confluent Parallel Consumer's, which keeps the offsets completed above the
committed one in the same place.

Format: ``cs2:`` + URL-safe base64 of zlib-compressed bytes: the window's
length, the jobs (slot, id), the *intents* (slot, wall-clock milliseconds),
and the marks themselves when they fit. zlib turns a run of equal marks into a
few bytes, and a settled window with coalesced records scattered through it
into two or three bits a record.

An intent is a slot whose job id is not known yet: a batch written ahead of
its POST (``commits.py``, :meth:`Committer.write_ahead`). Its records are
marked as carried by the slot before the POST goes out, and the time says
until when a job that POST may have created can still apply them
(``takeover.py``). Once the job exists its id takes the intent's place.

``cs1:`` is the format before intents (no intent section): still decoded, as
a ledger without intents. A version that knows only ``cs1:`` reads ``cs2:`` as
no ledger at all, and redoes the window: a rollback costs work, never order
beyond what it cost before.

When the whole ledger does not fit the limit it degrades, never the data:

* ``jobs``: the window's length, the jobs and the intents, without marks. The
  next owner redoes the window (coalesced, so each customer's latest change
  goes out once) after resolving the jobs, and, since it cannot tell which
  records an intent carried, treats every record of the window as carried by
  it;
* ``none``: an empty string (more jobs in flight than the limit can name).
  The next owner redoes the window, as a service without a ledger does.

Either is logged and counted by the committer; raising the broker's
``offset.metadata.max.bytes`` and ``COMMIT_METADATA_MAX_BYTES`` together
lifts it.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field
from typing import Literal

PREFIX = "cs2:"
_PREFIX_WITHOUT_INTENTS = "cs1:"
_FULL, _JOBS = 1, 2

Level = Literal["full", "jobs", "none"]


@dataclass(frozen=True, slots=True)
class Ledger:
    """What a previous owner left above its committed offset."""

    length: int  # offsets from the committed one to one past the last it consumed
    jobs: dict[int, str]  # slot -> job id
    marks: bytes | None  # one Mark per offset of the window; None when degraded
    intents: dict[int, float] = field(default_factory=dict)
    """slot -> wall-clock time (``time.time()``) its intent was written: no job id known."""


def encode(
    length: int,
    jobs: dict[int, str],
    marks: bytes,
    limit: int,
    intents: dict[int, float] | None = None,
) -> tuple[str, Level]:
    """The metadata string for a window, at the richest level shorter than ``limit`` characters.

    ``limit`` is the brokers' ``offset.metadata.max.bytes``: a string that long is refused.
    ``intents``: slot -> wall-clock seconds, kept to the millisecond.
    """
    head = _varint(length) + _varint(len(jobs))
    for slot, job_id in sorted(jobs.items()):
        raw = job_id.encode()
        head += _varint(slot) + _varint(len(raw)) + raw
    intents = intents or {}
    head += _varint(len(intents))
    for slot, at in sorted(intents.items()):
        head += _varint(slot) + _varint(max(0, round(at * 1000)))
    levels: tuple[tuple[int, bytes, Level], ...] = ((_FULL, marks, "full"), (_JOBS, b"", "jobs"))
    for flag, body, level in levels:
        text = PREFIX + base64.urlsafe_b64encode(
            zlib.compress(bytes([flag]) + head + body, 6)
        ).decode("ascii")
        if len(text) < limit:
            return text, level
    return "", "none"


def decode(text: str | None) -> Ledger | None:
    """The ledger in a commit's metadata; ``None`` when there is none or it is not ours."""
    if not text or not text.startswith((PREFIX, _PREFIX_WITHOUT_INTENTS)):
        return None
    try:
        data = zlib.decompress(base64.urlsafe_b64decode(text[len(PREFIX) :]))
        flag, at = data[0], 1
        length, at = _read_varint(data, at)
        count, at = _read_varint(data, at)
        jobs: dict[int, str] = {}
        for _ in range(count):
            slot, at = _read_varint(data, at)
            size, at = _read_varint(data, at)
            jobs[slot] = data[at : at + size].decode()
            at += size
        intents: dict[int, float] = {}
        if text.startswith(PREFIX):
            count, at = _read_varint(data, at)
            for _ in range(count):
                slot, at = _read_varint(data, at)
                millis, at = _read_varint(data, at)
                intents[slot] = millis / 1000
    except (binascii.Error, zlib.error, IndexError, UnicodeDecodeError, ValueError):
        return None
    marks = data[at:] if flag == _FULL else None
    if marks is not None and len(marks) != length:
        return None
    return Ledger(length, jobs, marks, intents)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
