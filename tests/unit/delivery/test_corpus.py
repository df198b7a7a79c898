"""Every corpus case through the decoder ends as its manifest says."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from service.delivery.decoding import Customer, Decoder, Reject, Skip
from tests.corpus import Case, load


def _params() -> list[Any]:
    params = []
    for case in load():
        marks = [pytest.mark.xfail(strict=True, reason=case.known_bug)] if case.known_bug else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_decoder_outcome_matches_the_manifest(case: Case) -> None:
    result = Decoder().decode(case.value())
    expect = case.expect
    if expect["outcome"] == "customer":
        assert isinstance(result, Customer), result
        assert result.customer_id == expect["customer_id"]
        assert orjson.loads(result.payload)["customerId"] == expect["customer_id"]
    elif expect["outcome"] == "skip":
        assert isinstance(result, Skip), result
    else:
        assert isinstance(result, Reject), result
        assert result.reason == expect["reason"], result.error
        assert result.error


def test_the_corpus_covers_what_the_issue_names() -> None:
    names = {case.name for case in load()}
    for required in (
        "non-utf8-latin1",
        "utf8-bom",
        "5mb-not-json",
        "nesting-10000",
        "nan-infinity",
        "duplicate-keys",
        "numbers-beyond-64-bits",
        "date-0000-00-00",
        "date-2024-02-30",
        "emoji-and-rtl",
        "empty-string-id",
        "nulls-everywhere",
        "schema-wrapped-delete",
        "truncated-envelope",
    ):
        assert required in names
