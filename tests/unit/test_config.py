"""Configuration: SPEC §6 defaults, one clear sentence per bad setting, secrets hidden."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from service.config import load_settings
from service.errors import ConfigError
from tests.helpers import wait_for

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
    "GAMEBALL_API_KEY": "key-123",
    "GAMEBALL_SECRET_KEY": "secret-456",
}


def test_defaults_follow_the_spec() -> None:
    s = load_settings(BASE)
    assert s.kafka_source_topics == ("customer-changes",)
    assert s.kafka_group_id == "customer-sync"
    assert s.kafka_dlq_topic == "customer-changes.dlq"
    assert s.gameball_base_url == "https://api.gameball.co"
    assert (s.batch_max_records, s.batch_max_wait_seconds, s.batch_max_bytes) == (
        1000,
        2.0,
        4194304,
    )
    assert (s.max_jobs_in_flight, s.job_timeout_seconds, s.max_submit_attempts) == (8, 900, 5)
    assert (s.delete_policy, s.http_port, s.log_level, s.log_format) == (
        "skip",
        8080,
        "INFO",
        "json",
    )
    assert s.shutdown_timeout_seconds == 30
    # Gameball's documented limits for the batch endpoints ("Others"), all of them ours.
    assert [(w.requests, w.seconds) for w in s.api_windows()] == [(30, 1.0), (360, 30.0)]
    assert s.gameball_key_share == 1.0
    assert s.gameball_allow_insecure_http is False


def test_client_properties_pass_through_and_guarantees_cannot_be_overridden() -> None:
    s = load_settings(
        {**BASE, "KAFKA_CLIENT_SESSION_TIMEOUT_MS": "6000", "KAFKA_SOURCE_TOPICS": "a, b"}
    )
    config = s.consumer_config()
    assert config["session.timeout.ms"] == "6000"
    assert config["enable.auto.commit"] is False
    assert config["enable.auto.offset.store"] is False
    assert s.kafka_source_topics == ("a", "b")
    producer = s.producer_config()
    assert producer["enable.idempotence"] is True
    assert "session.timeout.ms" not in producer
    with pytest.raises(ConfigError, match="KAFKA_CLIENT_ENABLE_AUTO_COMMIT"):
        load_settings({**BASE, "KAFKA_CLIENT_ENABLE_AUTO_COMMIT": "true"})


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": None}, "KAFKA_BOOTSTRAP_SERVERS is required"),
        ({"GAMEBALL_SECRET_KEY": None}, "GAMEBALL_SECRET_KEY is required"),
        ({"BATCH_MAX_RECORDS": "1001"}, "BATCH_MAX_RECORDS is invalid"),
        ({"BATCH_MAX_WAIT_SECONDS": "soon"}, "BATCH_MAX_WAIT_SECONDS is invalid"),
        ({"GAMEBALL_REQUEST_TIMEOUT_SECONDS": "0"}, "GAMEBALL_REQUEST_TIMEOUT_SECONDS is invalid"),
        ({"DELETE_POLICY": "purge"}, "DELETE_POLICY is invalid"),
        ({"GAMEBALL_BASE_URL": "api.gameball.co"}, "GAMEBALL_BASE_URL is invalid"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT is invalid"),
        ({"KAFKA_SOURCE_TOPICS": " , "}, "KAFKA_SOURCE_TOPICS is invalid"),
    ],
)
def test_a_bad_setting_is_named_in_one_sentence(
    override: dict[str, str | None], variable: str
) -> None:
    env = {**BASE, **override}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(variable)
    assert "\n" not in str(caught.value)


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    s = load_settings({**BASE, "KAFKA_CLIENT_SASL_PASSWORD": "sasl-789"})
    assert s.consumer_config()["sasl.password"] == "sasl-789"
    assert "secret-456" not in repr(s)
    assert "sasl-789" not in repr(s)
    assert "sasl-789" not in str(s.model_dump())
    assert "key-123" not in str(s.model_dump())
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "GAMEBALL_API_KEY": "   "})
    assert "GAMEBALL_API_KEY" in str(caught.value)


def test_kip_848_leaves_the_group_settings_to_the_broker() -> None:
    s = load_settings({**BASE, "KAFKA_CLIENT_GROUP_PROTOCOL": "consumer"})
    config = s.consumer_config()
    assert config["group.protocol"] == "consumer"
    for refused in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
        assert refused not in config
    assert "group.protocol" not in s.producer_config()
    classic = load_settings(BASE).consumer_config()
    assert classic["partition.assignment.strategy"] == "cooperative-sticky"


@pytest.mark.parametrize(
    "variable",
    [
        "KAFKA_CLIENT_SESSION_TIMEOUT_MS",
        "KAFKA_CLIENT_HEARTBEAT_INTERVAL_MS",
        "KAFKA_CLIENT_PARTITION_ASSIGNMENT_STRATEGY",
        "KAFKA_CLIENT_GROUP_PROTOCOL_TYPE",
    ],
)
def test_a_property_kip_848_refuses_is_named_at_start(variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "KAFKA_CLIENT_GROUP_PROTOCOL": "consumer", variable: "6000"})
    message = str(caught.value)
    assert message.startswith(f"{variable} is not allowed with KAFKA_CLIENT_GROUP_PROTOCOL=")
    assert "\n" not in message


def test_the_consumer_accepts_what_the_settings_accept() -> None:
    """librdkafka itself agrees: the rendered dicts create clients (no broker needed)."""
    from confluent_kafka import Consumer, Producer

    for protocol in ("classic", "consumer"):
        s = load_settings({**BASE, "KAFKA_CLIENT_GROUP_PROTOCOL": protocol})
        Consumer(s.consumer_config()).close()
        Producer(s.producer_config()).flush(0)


def test_an_unknown_group_protocol_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match=r"^KAFKA_CLIENT_GROUP_PROTOCOL is invalid 'cosumer'"):
        load_settings({**BASE, "KAFKA_CLIENT_GROUP_PROTOCOL": "cosumer"})


@pytest.mark.parametrize(
    "url", ["http://api.gameball.co", "http://10.0.0.7:8090", "http://127.0.0.1.example.com"]
)
def test_plain_http_beyond_this_machine_stops_start_up(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "GAMEBALL_BASE_URL": url})
    message = str(caught.value)
    assert message.startswith(f"GAMEBALL_BASE_URL '{url}' would send the API keys in clear text")
    assert "GAMEBALL_ALLOW_INSECURE_HTTP=true" in message
    assert "\n" not in message
    assert "key-123" not in message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8090", "http://127.8.9.10", "http://localhost:8090", "http://[::1]:80"],
)
def test_plain_http_on_loopback_is_fine_for_the_simulator_and_the_demo(url: str) -> None:
    assert load_settings({**BASE, "GAMEBALL_BASE_URL": url}).gameball_base_url == url


def test_plain_http_elsewhere_takes_an_explicit_opt_in() -> None:
    env = {**BASE, "GAMEBALL_BASE_URL": "http://simulator:8090"}
    settings = load_settings({**env, "GAMEBALL_ALLOW_INSECURE_HTTP": "true"})
    assert settings.gameball_base_url == "http://simulator:8090"


def test_the_limits_and_the_share_of_the_key_are_settings() -> None:
    s = load_settings(
        {
            **BASE,
            "GAMEBALL_RATE_LIMIT_PER_SECOND": "10",
            "GAMEBALL_QUOTA_REQUESTS": "100",
            "GAMEBALL_QUOTA_WINDOW_SECONDS": "60",
            "GAMEBALL_KEY_SHARE": "0.25",
        }
    )
    assert [(w.requests, w.seconds) for w in s.api_windows()] == [(10, 1.0), (100, 60.0)]
    assert s.gameball_key_share == 0.25
    with pytest.raises(ConfigError, match=r"^GAMEBALL_KEY_SHARE is invalid"):
        load_settings({**BASE, "GAMEBALL_KEY_SHARE": "0"})
    with pytest.raises(ConfigError, match=r"^GAMEBALL_QUOTA_REQUESTS is invalid"):
        load_settings({**BASE, "GAMEBALL_QUOTA_REQUESTS": "0"})


@pytest.mark.parametrize(
    "variable",
    [
        "KAFKA_CLIENT_FETCH_QUEUE_BACKOFF_MS",
        "KAFKA_CLIENT_QUEUED_MAX_MESSAGES_KBYTES",
        "KAFKA_CLIENT_FETCH_MAX_BYTES",
        "KAFKA_CLIENT_SESSION_TIMEOUT_MS",
    ],
)
def test_a_consumer_tuning_does_not_reach_the_dead_letter_producer(variable: str) -> None:
    """librdkafka warns (CONFWARN) at start for each consumer property a producer gets. A
    consumer-only property added on purpose says when the warnings have been served."""
    warnings: list[str] = []
    logger = logging.getLogger("test-producer-config")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "CONFWARN" in record.getMessage():
                warnings.append(record.getMessage())

    keep = Keep()
    logger.addHandler(keep)
    try:
        config = load_settings({**BASE, variable: "1000"}).producer_config()
        producer = Producer({**config, "check.crcs": True, "logger": logger})
        # Every CONFWARN is queued while the producer is built: served once none is left.
        wait_for(lambda: producer.poll(0.05) == 0 and warnings, 10, "the sentinel's CONFWARN")
    finally:
        logger.removeHandler(keep)
    assert len(warnings) == 1, warnings
    assert "check.crcs" in warnings[0]


def test_the_schema_registry_settings_become_the_clients_and_its_password_stays_hidden() -> None:
    assert load_settings(BASE).schema_registry_config() is None
    s = load_settings(
        {
            **BASE,
            "SCHEMA_REGISTRY_URL": "https://registry.example:8081/",
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "reader:registry-pw-1",
            "SCHEMA_REGISTRY_CA_LOCATION": "/etc/ssl/ca.pem",
            "SCHEMA_REGISTRY_CERTIFICATE_LOCATION": "/etc/ssl/client.pem",
            "SCHEMA_REGISTRY_KEY_LOCATION": "/etc/ssl/client.key",
        }
    )
    config = s.schema_registry_config()
    assert config is not None
    assert config["url"] == "https://registry.example:8081"
    assert config["basic.auth.user.info"] == "reader:registry-pw-1"
    assert config["ssl.ca.location"] == "/etc/ssl/ca.pem"
    assert config["ssl.certificate.location"] == "/etc/ssl/client.pem"
    assert config["ssl.key.location"] == "/etc/ssl/client.key"
    assert "registry-pw-1" not in repr(s)
    assert "registry-pw-1" not in str(s.model_dump())
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "SCHEMA_REGISTRY_URL": "registry:8081"})
    assert "SCHEMA_REGISTRY_URL" in str(caught.value)
