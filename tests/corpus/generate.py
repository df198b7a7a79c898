"""Corpus cases too large to keep in git, built in memory on demand."""

from __future__ import annotations

from collections.abc import Callable

import orjson

FIVE_MB = 5 * 1024 * 1024


def nesting_10000() -> bytes:
    """A customer whose ``custom`` is nested 10,000 levels deep (parsers cap depth: orjson 1024)."""
    return b'{"customerId":"deep-1","custom":' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}"


def array_nesting_10000() -> bytes:
    return b"[" * 10_000 + b"]" * 10_000


def five_mb_not_json() -> bytes:
    """A 5 MB value that is not JSON (a log file written to the wrong topic)."""
    line = b"2024-01-01T00:00:00Z INFO something happened in the upstream service\n"
    return (line * (FIVE_MB // len(line) + 1))[:FIVE_MB]


def five_mb_valid_row() -> bytes:
    """A valid customer whose JSON ``custom`` column carries 5 MB (a blob column)."""
    blob = orjson.dumps({"notes": "n" * FIVE_MB}).decode()
    return orjson.dumps({"op": "u", "after": {"customer_id": "huge-1", "custom": blob}})


GENERATORS: dict[str, Callable[[], bytes]] = {
    "nesting-10000": nesting_10000,
    "array-nesting-10000": array_nesting_10000,
    "5mb-not-json": five_mb_not_json,
    "5mb-valid-row": five_mb_valid_row,
}
