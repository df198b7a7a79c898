"""Configuration: read once, at start, from the environment (SPEC §6).

One frozen :class:`Settings` object carries everything; secrets are
``SecretStr`` so they print as ``**********`` in any repr, log or error.
:func:`load_settings` turns pydantic's validation report into a single
sentence naming the variable, which is what an operator reading a crashlooping
pod's log needs.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.errors import ConfigError
from service.gameball.budget import Window
from service.gameball.customer import CustomerShape, TagsSync
from service.gameball.dialects import Endpoint
from service.gameball.models import MAX_BATCH_RECORDS

KAFKA_CLIENT_PREFIX = "KAFKA_CLIENT_"

# librdkafka properties the service owns: overriding them would break the
# delivery guarantees, so a KAFKA_CLIENT_* variable naming one is refused.
_RESERVED_CLIENT_PROPERTIES = frozenset(
    {
        "enable.auto.commit",
        "enable.auto.offset.store",
        "group.id",
        "bootstrap.servers",
        "enable.partition.eof",
    }
)

# Under KIP-848 (``group.protocol=consumer``) the broker runs the group: librdkafka
# refuses these properties and names the broker setting that replaced each.
_CLASSIC_PROTOCOL_ONLY = {
    "session.timeout.ms": "the broker's group.consumer.session.timeout.ms sets it",
    "heartbeat.interval.ms": "the broker's group.consumer.heartbeat.interval.ms sets it",
    "partition.assignment.strategy": "the broker assigns partitions "
    "(choose its assignor with KAFKA_CLIENT_GROUP_REMOTE_ASSIGNOR)",
    "group.protocol.type": "it only applies to the classic protocol",
}
GROUP_PROTOCOLS = ("classic", "consumer")

# Consumer defaults sized for throughput with a bounded prefetch; each can be
# overridden through KAFKA_CLIENT_<PROPERTY>.
_CONSUMER_DEFAULTS: dict[str, str | int | bool] = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 45000,
    "max.poll.interval.ms": 300000,
    "fetch.min.bytes": 1,
    "fetch.wait.max.ms": 100,
    # The prefetch: librdkafka fetches until its queue holds queued.max.messages.kbytes,
    # then waits fetch.queue.backoff.ms (1 s by default) before fetching those partitions
    # again (librdkafka #2879). With Debezium-sized records (2.2 kB) a round of fetches
    # filled the queue and the consumer starved for most of each second: the loop waited
    # on consume() 65 % of the time. Measured on the CPU-bound and backlog benchmarks
    # (records/s until the last was read; peak RSS in the backlog):
    #   32 MB queue, 4 MB per partition, 1 s backoff:  22k and 20k, 220 MB
    #   32 MB, 4 MB, 20 ms:                            46k and 25k, 240 MB
    #    8 MB, 1 MB, 20 ms:                            46k and 28k, 181 MB
    "queued.max.messages.kbytes": 8192,
    "max.partition.fetch.bytes": 1048576,
    "fetch.max.bytes": 16777216,
    "fetch.queue.backoff.ms": 20,
}


class Settings(BaseSettings):
    """Every setting of the service. Field names are the variables, lower-cased."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = Field(description="broker list, `host:port,host:port`")
    kafka_source_topics: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("customer-changes",), description="topics to consume, comma-separated"
    )
    kafka_group_id: str = Field(default="customer-sync", description="consumer group")
    kafka_dlq_topic: str = Field(
        default="customer-changes.dlq", description="dead-letter topic (must exist)"
    )
    kafka_client: dict[str, str] = Field(
        default_factory=dict,
        exclude=True,
        # librdkafka properties may hold secrets (sasl.password, ssl.key.password):
        # kept out of reprs and dumps, like the API keys.
        repr=False,
        description="any librdkafka property, upper-cased, dots as underscores "
        "(`KAFKA_CLIENT_SECURITY_PROTOCOL=SASL_SSL`); `enable.auto.commit`, "
        "`enable.auto.offset.store`, `enable.partition.eof`, `group.id` and "
        "`bootstrap.servers` are the service's own and refused",
    )

    gameball_base_url: str = Field(default="https://api.gameball.co", description="API root")
    gameball_allow_insecure_http: bool = Field(
        default=False,
        description="accept an `http://` `GAMEBALL_BASE_URL` to a host other than loopback "
        "(the keys would travel in clear text)",
    )
    gameball_job_api: Literal["auto", "batch", "batches"] = Field(
        default="auto",
        description="`batch` (`GET`/`DELETE /batch/{id}`), `batches` (`/batches/{id}/status`, "
        "`/stop`) or `auto` (see [Job dialects](#job-dialects-versions-and-errors))",
    )
    gameball_api_version: Literal["v4.0", "v4.1"] = Field(
        default="v4.0",
        description="the API version in every path; `v4.1` where a minimum version is set",
    )
    gameball_request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long one API request may take, all of it (a connection gets 10 s "
        "of it at most); a takeover holds the customers of a POST whose answer was lost this "
        "long plus `JOB_TIMEOUT_SECONDS` after its write-ahead",
    )
    gameball_api_key: SecretStr = Field(description="API key (never logged)")
    gameball_secret_key: SecretStr = Field(description="secret key (never logged)")
    # Gameball's "Rate Limiting" page: the batch endpoints fall under "Others".
    gameball_rate_limit_per_second: int = Field(
        default=30,
        ge=1,
        description="requests per second the API key allows on the batch endpoints "
        "(Gameball's documented limit; see [Rate limits](#rate-limits))",
    )
    gameball_quota_requests: int = Field(
        default=360,
        ge=1,
        description="requests per `GAMEBALL_QUOTA_WINDOW_SECONDS` the API key allows",
    )
    gameball_quota_window_seconds: float = Field(
        default=30.0, gt=0, description="the quota's window, in seconds"
    )
    gameball_key_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="part of the key's limits this consumer group may use; lower it when "
        "another application uses the same API key",
    )

    batch_max_records: int = Field(
        default=MAX_BATCH_RECORDS,
        ge=1,
        le=MAX_BATCH_RECORDS,
        description=f"flush at this many records (1..{MAX_BATCH_RECORDS})",
    )
    batch_max_wait_seconds: float = Field(
        default=2.0, gt=0, description="flush a non-empty buffer this long after its oldest record"
    )
    batch_max_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="flush before a request body exceeds this"
    )
    max_jobs_in_flight: int = Field(default=8, ge=1, le=256, description="concurrent jobs")
    max_buffered_records: int = Field(
        default=20_000, ge=1, description="records held in memory before the consumer pauses"
    )
    compaction_max_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=0,
        description="while quota-bound, how much memory the buffer may fill reading a backlog "
        "ahead, one change per customer (0: off; see README, Compaction)",
    )
    job_timeout_seconds: float = Field(
        default=900.0, gt=0, description="then stop the job and resubmit its records"
    )
    max_submit_attempts: int = Field(
        default=5, ge=1, description="jobs per record for job-level failures"
    )
    customer_wait_seconds: float = Field(
        default=600.0,
        gt=0,
        description="how long an order, cashback, redemption, event or balance adjustment "
        "is retried while the API says its customer is not found (7000), before it is "
        "dead-lettered customer_not_found",
    )
    commit_metadata_max_bytes: int = Field(
        default=4096,
        ge=0,
        description="the brokers' `offset.metadata.max.bytes` (4096 by default), or less: the "
        "commit metadata per partition (the ledger of what is settled above the committed "
        "offset) stays shorter than this, as the broker requires; 0 commits none",
    )
    delete_policy: Literal["skip", "dead-letter"] = Field(
        default="skip", description="what a Debezium delete (`op: d`) does: `skip` or `dead-letter`"
    )
    dlq_breaker_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="the dead-letter breaker opens when more than this part of the last "
        "`DLQ_BREAKER_WINDOW` records were dead-lettered: the partitions pause, readiness "
        "fails, nothing more is committed; `1.0` switches it off",
    )
    dlq_breaker_window: int = Field(
        default=1000, ge=1, description="records the dead-letter breaker looks back over"
    )
    dlq_breaker_cooldown_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how long the dead-letter breaker holds the records before it lets them "
        "through again (the next dead letter re-checks it)",
    )
    gameball_customer_shape: CustomerShape = Field(
        default="nested",
        description="the customer item's shape: `nested` (Gameball's reference and OpenAPI: "
        "the profile inside `customerAttributes`) or `flat` (the tutorial's); see "
        "[Customer shapes](#customer-shapes)",
    )
    tags_sync: TagsSync = Field(
        default="changed",
        description="nested shape: how tags reach Gameball: `changed` (one tags call per "
        "customer whose tags changed), `always` (one per change), `item` (in the batch item, "
        "as the tutorial shows; no extra calls) or `off`; the flat shape keeps them in the item",
    )
    field_mapping_file: Path | None = Field(
        default=None,
        description="row-to-customer mapping, YAML or JSON: `api.field.path: column.path` "
        "(`customerAttributes.city: address.city` in the nested shape), a column's `type` where "
        "events carry no schema, `custom.<attribute>: column` (see Input)",
    )
    routes_file: Path | None = Field(
        default=None,
        description="topics → Gameball operations, YAML (see [Routes](docs/routes.md)); unset, "
        "one customers route named `customers` reads `KAFKA_SOURCE_TOPICS` through "
        "`FIELD_MAPPING_FILE`, and with it neither of those two may be set",
    )

    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent-compatible schema registry (Confluent, Apicurio's "
        "`/apis/ccompat/v7`): values in the Confluent wire format (a zero byte, a schema id, "
        "Avro) are decoded by their schema; unset, such values are dead-lettered",
    )
    schema_registry_basic_auth_user_info: SecretStr | None = Field(
        default=None, description="registry basic auth, `user:password` (never logged)"
    )
    schema_registry_ca_location: Path | None = Field(
        default=None, description="CA bundle (PEM) to verify the registry's TLS certificate"
    )
    schema_registry_certificate_location: Path | None = Field(
        default=None, description="client certificate (PEM) for registry mutual TLS"
    )
    schema_registry_key_location: Path | None = Field(
        default=None, description="the client certificate's private key (PEM)"
    )

    http_port: int = Field(
        default=8080, ge=0, le=65535, description="`/metrics`, `/healthz`, `/readyz`"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="`DEBUG`, `INFO`, `WARNING` or `ERROR`"
    )
    log_format: Literal["json", "console"] = Field(
        default="json", description="`json` (one object per line) or `console`"
    )
    shutdown_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="graceful-shutdown budget (keep `terminationGracePeriodSeconds` above it)",
    )

    @field_validator("kafka_source_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            topics = tuple(t.strip() for t in value.split(",") if t.strip())
            if not topics:
                raise ValueError("must name at least one topic")
            return topics
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "gameball_job_api",
        "gameball_api_version",
        "gameball_customer_shape",
        "tags_sync",
        mode="before",
    )
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("gameball_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("gameball_api_key", "gameball_secret_key")
    @classmethod
    def _not_blank(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @property
    def group_protocol(self) -> str:
        """``classic`` (the default; cooperative-sticky) or ``consumer`` (KIP-848)."""
        return self.kafka_client.get("group.protocol", "classic").strip().lower()

    @model_validator(mode="after")
    def _client_fits_the_group_protocol(self) -> Settings:
        protocol = self.group_protocol
        if protocol not in GROUP_PROTOCOLS:
            raise ValueError(
                f"KAFKA_CLIENT_GROUP_PROTOCOL is invalid {protocol!r}: "
                "use classic or consumer (KIP-848)"
            )
        if protocol == "consumer":
            for prop, why in _CLASSIC_PROTOCOL_ONLY.items():
                if prop in self.kafka_client:
                    raise ValueError(
                        f"{_variable(prop)} is not allowed with "
                        f"KAFKA_CLIENT_GROUP_PROTOCOL=consumer (KIP-848): {why}"
                    )
        return self

    @model_validator(mode="after")
    def _credentials_travel_encrypted(self) -> Settings:
        """The keys ride in every request's headers: plain HTTP only on loopback, or opted in."""
        url = self.gameball_base_url
        if (
            url.startswith("http://")
            and not self.gameball_allow_insecure_http
            and not _is_loopback(urlsplit(url).hostname or "")
        ):
            raise ValueError(
                f"GAMEBALL_BASE_URL {url!r} would send the API keys in clear text: use https://, "
                "or set GAMEBALL_ALLOW_INSECURE_HTTP=true to accept that"
            )
        return self

    @model_validator(mode="after")
    def _routes_file_says_the_topics_and_mappings(self) -> Settings:
        """With a routes file, the topics and each customers route's mapping are in it: a
        variable that would be ignored stops start-up instead."""
        if self.routes_file is None:
            return self
        if "field_mapping_file" in self.model_fields_set:
            raise ValueError(
                "ROUTES_FILE and FIELD_MAPPING_FILE are both set: with a routes file each "
                "customers route carries its own mapping (mapping:, read as FIELD_MAPPING_FILE "
                "is), so move the file's entries there and unset FIELD_MAPPING_FILE"
            )
        if "kafka_source_topics" in self.model_fields_set:
            raise ValueError(
                "ROUTES_FILE and KAFKA_SOURCE_TOPICS are both set: with a routes file each "
                "route names its topics (topics:), so unset KAFKA_SOURCE_TOPICS"
            )
        return self

    @model_validator(mode="after")
    def _buffer_holds_a_batch(self) -> Settings:
        if self.max_buffered_records < self.batch_max_records:
            raise ValueError(
                "MAX_BUFFERED_RECORDS must be at least BATCH_MAX_RECORDS "
                f"({self.batch_max_records}), or no batch could ever fill"
            )
        return self

    @property
    def gameball_endpoint(self) -> Endpoint:
        return Endpoint(self.gameball_base_url, self.gameball_job_api, self.gameball_api_version)

    def api_windows(self) -> tuple[Window, ...]:
        """The key's limits, as the request budget counts them."""
        return (
            Window(self.gameball_rate_limit_per_second, 1.0),
            Window(self.gameball_quota_requests, self.gameball_quota_window_seconds),
        )

    def consumer_config(self) -> dict[str, str | int | bool]:
        """The librdkafka consumer dict: our defaults, the user's overrides, our invariants.

        Offsets are stored and committed only by the service, after settlement,
        so auto-commit and auto-store are forced off whatever the environment says.
        Under KIP-848 the defaults the broker now owns are left out.
        """
        defaults = _CONSUMER_DEFAULTS
        if self.group_protocol == "consumer":
            defaults = {k: v for k, v in defaults.items() if k not in _CLASSIC_PROTOCOL_ONLY}
        config: dict[str, str | int | bool] = {**defaults, **self.kafka_client}
        config.update(
            {
                "bootstrap.servers": self.kafka_bootstrap_servers,
                "group.id": self.kafka_group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            }
        )
        return config

    def schema_registry_config(self) -> dict[str, str | int] | None:
        """confluent-kafka's ``SchemaRegistryClient`` settings, or ``None`` without a registry.

        The client retries nothing itself (``max.retries`` 0): an unreachable registry is the
        pipeline's to wait out (:class:`~service.errors.RegistryUnavailable`), not the decoder's.
        """
        if self.schema_registry_url is None:
            return None
        config: dict[str, str | int] = {
            "url": self.schema_registry_url,
            "timeout": 10,
            "max.retries": 0,
        }
        if self.schema_registry_basic_auth_user_info is not None:
            config["basic.auth.user.info"] = (
                self.schema_registry_basic_auth_user_info.get_secret_value()
            )
        for key, path in (
            ("ssl.ca.location", self.schema_registry_ca_location),
            ("ssl.certificate.location", self.schema_registry_certificate_location),
            ("ssl.key.location", self.schema_registry_key_location),
        ):
            if path is not None:
                config[key] = str(path)
        return config

    def producer_config(self) -> dict[str, str | int | bool]:
        """The dead-letter producer: idempotent, acks=all, so an acknowledged write is durable."""
        consumer_only = {
            "auto.offset.reset",
            "group.protocol",
            "group.remote.assignor",
            "group.protocol.type",
            "partition.assignment.strategy",
            "session.timeout.ms",
            "max.poll.interval.ms",
            "fetch.min.bytes",
            "fetch.wait.max.ms",
            "queued.max.messages.kbytes",
            "max.partition.fetch.bytes",
            "fetch.max.bytes",
            "fetch.queue.backoff.ms",
            "fetch.error.backoff.ms",
            "queued.min.messages",
            "group.instance.id",
            "heartbeat.interval.ms",
            "isolation.level",
        }
        shared = {k: v for k, v in self.kafka_client.items() if k not in consumer_only}
        return {
            "linger.ms": 20,
            **shared,
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
        }


def _is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``: a request that never leaves the machine."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _variable(prop: str) -> str:
    """``session.timeout.ms`` → ``KAFKA_CLIENT_SESSION_TIMEOUT_MS``."""
    return KAFKA_CLIENT_PREFIX + prop.upper().replace(".", "_")


def _client_properties(environ: Mapping[str, str]) -> dict[str, str]:
    """``KAFKA_CLIENT_SESSION_TIMEOUT_MS=6000`` → ``{"session.timeout.ms": "6000"}``."""
    properties: dict[str, str] = {}
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(KAFKA_CLIENT_PREFIX) or upper == KAFKA_CLIENT_PREFIX:
            continue
        prop = upper[len(KAFKA_CLIENT_PREFIX) :].lower().replace("_", ".")
        if prop in _RESERVED_CLIENT_PROPERTIES:
            raise ConfigError(
                f"{name} is not allowed: customer-sync manages '{prop}' itself "
                "to keep its delivery guarantees"
            )
        properties[prop] = value
    return properties


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = first["loc"][0] if first["loc"] else ""
    variable = str(location).upper()
    message = str(first["msg"])
    if first["type"] == "missing":
        return f"{variable} is required but not set"
    if not variable:  # a model-level rule already names its variables
        return message.removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if "key" in variable.lower() or not isinstance(value, str) else f" {value!r}"
    return f"{variable} is invalid{shown}: {message.removeprefix('Value error, ')}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the whole configuration, or raise one clear :class:`ConfigError`."""
    env = dict(os.environ if environ is None else environ)
    client = _client_properties(env)
    values: dict[str, Any] = {
        name.lower(): value
        for name, value in env.items()
        if name.lower() in Settings.model_fields and name.lower() != "kafka_client"
    }
    try:
        return Settings.model_validate({**values, "kafka_client": client})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
