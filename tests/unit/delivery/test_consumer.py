"""A fatal consumer error ends the service with a sentence; anything else does not."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError as RdKafkaError

from service.delivery.consumer import raise_if_fatal
from service.errors import KafkaError


@pytest.mark.parametrize(
    "error",
    [
        RdKafkaError(RdKafkaError._FATAL, "Fatal error: Broker: something broke"),
        RdKafkaError(RdKafkaError.FENCED_INSTANCE_ID, "fenced", fatal=True),
    ],
)
def test_a_fatal_error_is_raised(error: RdKafkaError) -> None:
    with pytest.raises(KafkaError, match=r"^the Kafka consumer failed for good"):
        raise_if_fatal(error)


def test_a_reused_static_instance_id_names_the_variable() -> None:
    error = RdKafkaError(
        RdKafkaError._FATAL,
        "Fatal error: Broker: The instance ID is still used by another member in the group",
    )
    with pytest.raises(KafkaError, match="KAFKA_CLIENT_GROUP_INSTANCE_ID"):
        raise_if_fatal(error)


@pytest.mark.parametrize("code", [RdKafkaError._TRANSPORT, RdKafkaError._ALL_BROKERS_DOWN])
def test_a_recoverable_error_is_not(code: int) -> None:
    raise_if_fatal(RdKafkaError(code, "librdkafka retries this by itself"))
