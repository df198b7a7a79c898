"""The batch operations Gameball publishes, and what a second delivery of each does.

Every operation takes ``POST /api/{version}/integrations/batch/<path>`` with ``{"body": [...]}``
(at most 1,000 items), answers a job id, and has its job read and stopped like the customers'
(``shared/GAMEBALL-API.md`` §6). They differ in what the API does with an item it is sent twice,
and that decides the delivery each can bear:

=====================  ===============  ===================================================
operation              natural key      a second delivery
=====================  ===============  ===================================================
customers              ``customerId``   an upsert (:attr:`Delivery.UPSERT`): harmless, but
                                        an older version after a newer one reverts it
orders                 ``orderId``      refused per record as a duplicate (:attr:`Delivery.KEYED`)
cashback, redeem       ``transactionId`` refused per record as a duplicate (:attr:`Delivery.KEYED`)
events,                none             **applied again**: points awarded or deducted twice
balance-adjustment                      (:attr:`Delivery.IDLESS`)
=====================  ===============  ===================================================

The item models are the OpenAPI's (``docs.gameball.co/api-reference/openapi.json``): required
fields as it lists them, every other field passed through (``extra="allow"``). The customers'
item lives in :mod:`service.gameball.customer`, in its two published shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
Number = int | float


class Operation(StrEnum):
    """A batch operation, by the last segment of its path (``.../integrations/batch/<value>``)."""

    CUSTOMERS = "customers"
    ORDERS = "orders"
    CASHBACK = "cashback"
    REDEEM = "redeem"
    EVENTS = "events"
    BALANCE_ADJUSTMENT = "balance-adjustment"

    @property
    def path(self) -> str:
        """The submission's path below the API version: ``/integrations/batch/<operation>``."""
        return f"/integrations/batch/{self.value}"

    @property
    def facts(self) -> OperationFacts:
        return FACTS[self]


class Delivery(Enum):
    """What a second delivery of an item does, hence how the service may deliver it."""

    UPSERT = "upsert"
    """The latest state wins: changes of one customer coalesce, a replay is harmless if ordered."""
    KEYED = "keyed"
    """A natural key from the source makes a second delivery a refused duplicate: at least once,
    never coalesced."""
    IDLESS = "idless"
    """No key: a second delivery applies again. At most once wherever a fate could be unknown."""


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    orderId: NonEmptyStr
    orderDate: NonEmptyStr
    totalPaid: Number


class CashbackItem(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    transactionId: NonEmptyStr
    transactionTime: NonEmptyStr
    amount: Number
    email: str | None = None
    mobile: str | None = None


class RedeemItem(BaseModel):
    """A redemption: by ``amount``, by ``points``, or releasing a hold (``holdReference``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    transactionId: NonEmptyStr
    transactionTime: NonEmptyStr
    amount: Number | None = None
    points: int | None = None
    holdReference: str | None = None
    email: str | None = None
    mobile: str | None = None

    @model_validator(mode="after")
    def _one_way_to_redeem(self) -> RedeemItem:
        if self.amount is None and self.points is None and self.holdReference is None:
            raise ValueError("a redemption needs one of amount, points or holdReference")
        return self


class EventItem(BaseModel):
    """Events fired for a customer: ``{event name: metadata object}``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    events: dict[NonEmptyStr, dict[str, Any]] = Field(min_length=1)


class BalanceAdjustmentItem(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    amount: Number
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OperationFacts:
    delivery: Delivery
    natural_key: str | None  # the item field that makes a second delivery a refused duplicate
    item: type[BaseModel] | None  # None: the customers' item, in its shape (customer.py)
    times: tuple[str, ...] = ()  # date-time fields: sent as UTC ISO 8601, never in the future
    required: tuple[str, ...] = ("customerId",)


FACTS: dict[Operation, OperationFacts] = {
    Operation.CUSTOMERS: OperationFacts(Delivery.UPSERT, "customerId", None),
    Operation.ORDERS: OperationFacts(
        Delivery.KEYED,
        "orderId",
        OrderItem,
        times=("orderDate",),
        required=("customerId", "orderId", "orderDate", "totalPaid"),
    ),
    Operation.CASHBACK: OperationFacts(
        Delivery.KEYED,
        "transactionId",
        CashbackItem,
        times=("transactionTime",),
        required=("customerId", "transactionId", "transactionTime", "amount"),
    ),
    Operation.REDEEM: OperationFacts(
        Delivery.KEYED,
        "transactionId",
        RedeemItem,
        times=("transactionTime",),
        required=("customerId", "transactionId", "transactionTime"),
    ),
    Operation.EVENTS: OperationFacts(
        Delivery.IDLESS, None, EventItem, required=("customerId", "events")
    ),
    Operation.BALANCE_ADJUSTMENT: OperationFacts(
        Delivery.IDLESS, None, BalanceAdjustmentItem, required=("customerId", "amount")
    ),
}
