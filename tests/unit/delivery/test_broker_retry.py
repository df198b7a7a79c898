"""A one-off broker call: transient answers asked again within the deadline, others at once."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from service.delivery.broker_retry import (
    BrokerCallFailed,
    ask_again_if_transient,
    is_transient,
    with_broker_retry,
)
from service.errors import KafkaError


class Answers:
    """A broker call that fails with ``errors`` in turn, then returns ``"ok"``."""

    def __init__(self, *errors: RdKafkaError) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    def __call__(self, seconds_left: float) -> str:
        self.calls.append(seconds_left)
        if self.errors:
            raise KafkaException(self.errors.pop(0))
        return "ok"


def answers(code: int, times: int, **flags: bool) -> Answers:
    return Answers(*[RdKafkaError(code, **flags) for _ in range(times)])


@pytest.mark.parametrize(
    "code",
    [
        RdKafkaError.NOT_LEADER_FOR_PARTITION,  # the demo-cdc failure: a new topic's leader
        RdKafkaError.LEADER_NOT_AVAILABLE,
        RdKafkaError.NOT_COORDINATOR,
        RdKafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        RdKafkaError.REQUEST_TIMED_OUT,
        RdKafkaError._TRANSPORT,
    ],
)
def test_a_transient_answer_is_asked_again_until_the_broker_answers(code: int) -> None:
    call = answers(code, 3)
    assert with_broker_retry(call, what="reading the end of t[0]", timeout=5) == "ok"
    assert len(call.calls) == 4


def test_a_code_librdkafka_marks_retriable_is_asked_again() -> None:
    call = answers(RdKafkaError.INVALID_REQUEST, 1, retriable=True)
    assert with_broker_retry(call, what="x", timeout=5) == "ok"
    assert len(call.calls) == 2


def test_each_attempt_is_given_the_time_left() -> None:
    call = answers(RdKafkaError.NOT_COORDINATOR, 2)
    with_broker_retry(call, what="x", timeout=5)
    assert call.calls[0] <= 5
    assert call.calls[0] > call.calls[1] > call.calls[2]


def test_a_transient_answer_past_the_deadline_is_one_sentence() -> None:
    call = answers(RdKafkaError.NOT_LEADER_FOR_PARTITION, 1000)
    started = time.monotonic()
    with pytest.raises(BrokerCallFailed) as caught:
        with_broker_retry(call, what="reading the end of orders[2]", timeout=0.5)
    took = time.monotonic() - started
    message = str(caught.value)
    assert message.startswith("reading the end of orders[2] failed: ")
    assert "NOT_LEADER_FOR_PARTITION" in message
    assert "the brokers still answered NOT_LEADER_FOR_PARTITION" in message
    assert "after 0.5 s" in message
    assert "\n" not in message
    assert 0.5 <= took < 1.5
    assert 3 <= len(call.calls) < 20  # paced, not a busy loop
    assert isinstance(caught.value.__cause__, KafkaException)
    assert caught.value.transient
    assert caught.value.name == "NOT_LEADER_FOR_PARTITION"


def test_no_broker_in_reach_is_said_so() -> None:
    call = answers(RdKafkaError._TRANSPORT, 1000)
    with pytest.raises(BrokerCallFailed) as caught:
        with_broker_retry(call, what="asking for metadata", timeout=0.3)
    assert str(caught.value).startswith(
        "asking for metadata failed: no answer from the brokers within 0.3 s ("
    )


@pytest.mark.parametrize(
    "code",
    [
        RdKafkaError.UNKNOWN_TOPIC_OR_PART,
        RdKafkaError._UNKNOWN_TOPIC,
        RdKafkaError._UNKNOWN_PARTITION,
    ],
)
def test_an_unknown_topic_fails_at_once_even_when_marked_retriable(code: int) -> None:
    call = answers(code, 5, retriable=True)
    started = time.monotonic()
    with pytest.raises(
        BrokerCallFailed, match=r"^reading the end of ordres\[0\] failed: .*UNKNOWN"
    ) as caught:
        with_broker_retry(call, what="reading the end of ordres[0]", timeout=30)
    assert len(call.calls) == 1
    assert time.monotonic() - started < 1
    assert not caught.value.transient


@pytest.mark.parametrize(
    "error",
    [
        RdKafkaError(RdKafkaError.TOPIC_AUTHORIZATION_FAILED),
        RdKafkaError(RdKafkaError.NOT_COORDINATOR, fatal=True),
    ],
)
def test_a_refusal_or_a_fatal_error_fails_at_once(error: RdKafkaError) -> None:
    call = Answers(error)
    with pytest.raises(KafkaError, match=error.name()):  # a CustomerSyncError: one line
        with_broker_retry(call, what="x", timeout=30)
    assert len(call.calls) == 1


def test_other_exceptions_pass_through() -> None:
    def call(_left: float) -> None:
        raise KeyError("t")

    with pytest.raises(KeyError):
        with_broker_retry(call, what="x", timeout=5)


def test_a_new_topics_metadata_error_is_asked_again_but_not_an_unknown_topic() -> None:
    with pytest.raises(KafkaException):
        ask_again_if_transient(RdKafkaError(RdKafkaError.LEADER_NOT_AVAILABLE))
    ask_again_if_transient(RdKafkaError(RdKafkaError.UNKNOWN_TOPIC_OR_PART))
    ask_again_if_transient(None)
    assert not is_transient("not a KafkaError")
