"""The service's own contracts, as pydantic models: the input event and the dead-letter headers.

The API's wire models live in :mod:`service.gameball.models`; these describe the two
ends that belong to this service (SPEC §3 and §5). ``schemas/`` is generated
from both (see :mod:`service.contracts.schemas`), and the tests check the code's real
output against the generated files, so the documents cannot drift from what
the service does.

The decoder does not validate with these models: it is tuned per record and
deliberately more lenient (snake_case names, Debezium's logical types, JSON
strings). These models state what a producer can rely on being accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, model_validator
from pydantic.config import JsonDict

from service.gameball.models import ApiCustomer
from service.labels import DeadLetterReason

Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]

_AFTER_REQUIRED: JsonDict = {
    "if": {"properties": {"op": {"enum": ["c", "u", "r"]}}, "required": ["op"]},
    "then": {"properties": {"after": {"type": "object"}}, "required": ["after"]},
}


class DebeziumEnvelope(BaseModel):
    """A Debezium change event (``value.converter`` JSON, schemas disabled).

    For ``c`` (create), ``u`` (update) and ``r`` (snapshot read) the ``after``
    row is the customer, mapped by column name or ``FIELD_MAPPING_FILE``; ``d``
    (delete) follows ``DELETE_POLICY``; ``t`` (a TRUNCATE, emitted only with the
    connector's ``skipped.operations=none``) names no customer and is skipped. Other
    operations (``m``, a logical decoding message) are dead-lettered as
    ``unsupported_operation``.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra=_AFTER_REQUIRED)

    before: dict[str, Any] | None = Field(default=None, description="the row before the change")
    after: dict[str, Any] | None = Field(
        default=None, description="the row after the change: the customer for c, u and r"
    )
    op: Literal["c", "u", "r", "d", "t"] = Field(
        description="c = create, u = update, r = snapshot read, d = delete, t = truncate"
    )
    ts_ms: int | None = Field(default=None, description="when the connector saw the change (ms)")
    source: dict[str, Any] | None = Field(
        default=None, description="connector metadata (db, table, lsn, ...); not used"
    )

    @model_validator(mode="after")
    def _row_for_upserts(self) -> DebeziumEnvelope:
        if self.op in ("c", "u", "r") and self.after is None:
            raise ValueError(f"op {self.op!r} needs an 'after' row")
        return self


class WrappedEnvelope(BaseModel):
    """The same envelope from the JSON converter with ``schemas.enable=true``."""

    model_config = ConfigDict(extra="allow")

    schema_: dict[str, Any] | None = Field(
        alias="schema",
        description="the Connect schema: each column's logical type (io.debezium.time.Date, "
        "org.apache.kafka.connect.data.Decimal, io.debezium.data.Json, ...) decides how its "
        "value is converted",
    )
    payload: DebeziumEnvelope


class InputEvent(RootModel[WrappedEnvelope | DebeziumEnvelope | ApiCustomer]):
    """The value of a record on a source topic (a null value, a tombstone, is skipped).

    One of: a Debezium envelope wrapped with its schema, a bare Debezium
    envelope, or a plain customer object already in the API's shape.
    """


class DeadLetterHeaders(BaseModel):
    """The headers of every record on the dead-letter topic (UTF-8 strings).

    The key and value are the source record's bytes, unchanged, so the record
    can be replayed as it was (``customer-sync dlq replay``).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    reason: DeadLetterReason = Field(alias="dlq.reason", description="why it was dead-lettered")
    error: str = Field(
        alias="dlq.error", description="human-readable detail: the validator's or the API's text"
    )
    source_topic: Annotated[str, StringConstraints(min_length=1)] = Field(
        alias="dlq.source.topic", description="the topic the record came from"
    )
    source_partition: Digits = Field(alias="dlq.source.partition")
    source_offset: Digits = Field(alias="dlq.source.offset")
    source_timestamp: Annotated[str, StringConstraints(pattern=r"^-?[0-9]+$")] = Field(
        alias="dlq.source.timestamp",
        description="the source record's Kafka timestamp, epoch ms (-1 when it had none)",
    )
    attempts: Digits = Field(
        alias="dlq.attempts", description="how many submissions the record went through"
    )
    job_id: str | None = Field(
        default=None,
        alias="dlq.job.id",
        description="the API job that reported the failure, when there was one",
    )
    value_omitted: Digits | None = Field(
        default=None,
        alias="dlq.value.omitted",
        description="set only when the value was too large for the dead-letter topic: its size "
        "in bytes; the record then carries no value (read it at its source offset)",
    )
