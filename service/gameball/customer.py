"""The customer item of ``POST /api/v4.0/integrations/batch/customers``, in both published shapes.

Gameball publishes two shapes (``shared/GAMEBALL-API.md`` §2):

* **nested** (the v4.0 reference and the OpenAPI; the default, ``GAMEBALL_CUSTOMER_SHAPE``):
  ``customerId``, the channel-merging keys ``email`` and ``mobile``, ``deviceToken``,
  ``osType``, ``referrerCode`` and ``guest`` at the top level, the profile inside
  ``customerAttributes``;
* **flat** (the tutorial in ``shared/seeds``): everything at the top level, with ``name`` and
  ``tags``, which no published customer schema has.

Each shape has a lenient model (unknown keys allowed, which is what the service checks its own
output against and what ``schemas/`` publishes) and a strict one (``extra="forbid"``): the
simulator's strict mode refuses, with a 400 naming it, any item field the chosen shape does
not define, so a test of the service against the wrong shape fails loudly instead of passing
while the profile is dropped.

``tags`` at the top level of a nested item is the tutorial's placement, sent only under
``TAGS_SYNC=item``; the nested models accept it so that mode can be tried against a server.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.gameball.models import DATE_PATTERN, MAX_BATCH_RECORDS

CustomerShape = Literal["nested", "flat"]
SHAPES: tuple[CustomerShape, ...] = ("nested", "flat")
TagsSync = Literal["changed", "always", "item", "off"]
"""Where a nested customer's tags go (``TAGS_SYNC``): beside the item, for the per-customer
tags call (``changed``: when they changed; ``always``), in the item (``item``), or nowhere."""

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
ApiDate = Annotated[str, StringConstraints(pattern=DATE_PATTERN)]
Number = int | float
Channel = Literal["mobile", "pos", "web", "callcenter"]

CHANNELS: tuple[str, ...] = ("mobile", "pos", "web", "callcenter")
ATTRIBUTES = "customerAttributes"
MERGE_KEYS = ("email", "mobile")
"""Top-level fields whose value a source column also gives the profile's own field."""


# --- flat: the tutorial's -----------------------------------------------------------------


class FlatCustomer(BaseModel):
    """The tutorial's customer: every field at the top level.

    Only ``customerId`` is required. The other documented Gameball customer fields the service
    maps by name (``mobile``, ``displayName``, ...) are declared so the strict variant knows them.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    email: str | None = None
    name: str | None = None
    gender: str | None = None
    dateOfBirth: ApiDate | None = None
    joinDate: ApiDate | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None
    mobile: str | None = None
    displayName: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    country: str | None = None
    city: str | None = None
    referrerCode: str | None = None


class StrictFlatCustomer(FlatCustomer):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- nested: the v4.0 reference's and the OpenAPI's -----------------------------------------


class CustomerAttributes(BaseModel):
    """The profile, inside ``customerAttributes`` (GAMEBALL-API.md §2's right-hand column)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    displayName: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    mobile: str | None = None
    gender: str | None = None
    dateOfBirth: ApiDate | None = None
    joinDate: ApiDate | None = None
    country: str | None = None
    city: str | None = None
    zip: str | None = None
    preferredLanguage: str | None = None
    source: str | None = None
    utms: list[Any] | None = None
    devices: list[Any] | None = None
    paymentMethods: list[Any] | None = None
    totalSpent: Number | None = None
    avgOrderAmount: Number | None = None
    totalOrders: int | None = None
    lastOrderDate: str | None = None
    channel: Channel | None = None
    custom: dict[str, Any] | None = None


class StrictCustomerAttributes(CustomerAttributes):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NestedCustomer(BaseModel):
    """The published customer: merge keys and device at the top, the profile nested."""

    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    email: str | None = None
    mobile: str | None = None
    deviceToken: str | None = None
    osType: str | None = None
    referrerCode: str | None = None
    guest: bool | None = None
    tags: list[str] | None = None  # the tutorial's placement: TAGS_SYNC=item only
    customerAttributes: CustomerAttributes | None = None


class StrictNestedCustomer(NestedCustomer):
    model_config = ConfigDict(extra="forbid", frozen=True)

    customerAttributes: StrictCustomerAttributes | None = None


# --- the request -------------------------------------------------------------------------


class NestedBatchRequest(BaseModel):
    """The body of ``POST /api/v4.0/integrations/batch/customers``, nested customers."""

    body: Annotated[list[NestedCustomer], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class FlatBatchRequest(BaseModel):
    """The body of ``POST /api/v4.0/integrations/batch/customers``, the tutorial's customers."""

    body: Annotated[list[FlatCustomer], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class StrictNestedBatchRequest(BaseModel):
    body: Annotated[list[StrictNestedCustomer], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class StrictFlatBatchRequest(BaseModel):
    body: Annotated[list[StrictFlatCustomer], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


_STRICT: dict[str, type[BaseModel]] = {
    "nested": StrictNestedBatchRequest,
    "flat": StrictFlatBatchRequest,
}
_LENIENT: dict[str, type[BaseModel]] = {"nested": NestedBatchRequest, "flat": FlatBatchRequest}


def batch_request(shape: CustomerShape, *, strict: bool) -> type[BaseModel]:
    """The request model a server binding ``shape`` validates with."""
    return (_STRICT if strict else _LENIENT)[shape]


# --- the field tables the decoder and the mapping read ------------------------------------

NESTED_TOP: tuple[str, ...] = tuple(
    name for name in NestedCustomer.model_fields if name not in ("tags", ATTRIBUTES)
)
"""The nested shape's top-level fields (``tags`` aside: only ``TAGS_SYNC=item`` sends it)."""
NESTED_ATTRIBUTES: tuple[str, ...] = tuple(CustomerAttributes.model_fields)
FLAT_FIELDS: tuple[str, ...] = tuple(FlatCustomer.model_fields)


def unknown_fields(item: dict[str, Any], shape: CustomerShape) -> list[str]:
    """The fields of ``item`` that ``shape`` does not define, as paths (for lenient counting)."""
    if shape == "flat":
        return [key for key in item if key not in FlatCustomer.model_fields]
    unknown = [key for key in item if key not in NestedCustomer.model_fields]
    attributes = item.get(ATTRIBUTES)
    if isinstance(attributes, dict):
        known = CustomerAttributes.model_fields
        unknown += [f"{ATTRIBUTES}.{key}" for key in attributes if key not in known]
    return unknown
