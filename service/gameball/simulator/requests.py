"""What each batch operation other than customers accepts: ``{"body": [item, ...]}``.

The items are :mod:`service.gameball.operations`' models (the OpenAPI's required fields, every
other field passed through); the envelope is the customers' one: 1 to 1,000 items. The
customers' request lives with its two shapes in :mod:`service.gameball.customer`, and the
simulator checks it through the faster :mod:`.gate`; these are checked by pydantic alone,
being neither the benchmark's load nor a thousand items a job in any test.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from service.gameball.models import MAX_BATCH_RECORDS
from service.gameball.operations import (
    BalanceAdjustmentItem,
    CashbackItem,
    EventItem,
    Operation,
    OrderItem,
    RedeemItem,
)


class OrdersRequest(BaseModel):
    """The body of ``POST .../integrations/batch/orders``."""

    body: Annotated[list[OrderItem], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class CashbackRequest(BaseModel):
    """The body of ``POST .../integrations/batch/cashback``."""

    body: Annotated[list[CashbackItem], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class RedeemRequest(BaseModel):
    """The body of ``POST .../integrations/batch/redeem``."""

    body: Annotated[list[RedeemItem], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class EventsRequest(BaseModel):
    """The body of ``POST .../integrations/batch/events``."""

    body: Annotated[list[EventItem], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class BalanceAdjustmentRequest(BaseModel):
    """The body of ``POST .../integrations/batch/balance-adjustment``."""

    body: Annotated[list[BalanceAdjustmentItem], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


REQUESTS: dict[Operation, type[BaseModel]] = {
    Operation.ORDERS: OrdersRequest,
    Operation.CASHBACK: CashbackRequest,
    Operation.REDEEM: RedeemRequest,
    Operation.EVENTS: EventsRequest,
    Operation.BALANCE_ADJUSTMENT: BalanceAdjustmentRequest,
}
"""Every operation the simulator serves besides customers, with its request model."""


def items(operation: Operation, raw: Any) -> list[dict[str, Any]]:
    """The items of a valid request, as sent; ``ValidationError`` says what is wrong."""
    REQUESTS[operation].model_validate(raw)
    body: list[dict[str, Any]] = raw["body"]
    return body
