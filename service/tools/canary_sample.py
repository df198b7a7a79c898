"""The canary's sample row: a value for every column the chosen customer reads.

Each value is what a CDC row would hold for the API field the column feeds, of the field's
kind (:func:`~service.delivery.fields.target_of`), so the decoder turns the row into a customer
with every field set that the mapping and the by-name defaults can fill: the check then covers
all of them, not only the ones a real row happens to hold.
"""

from __future__ import annotations

from typing import Any

from service.delivery.fields import Target, target_of
from service.delivery.mapping import FieldMapping, Layout, Source

BY_KIND: dict[Target, Any] = {
    Target.DATE: "1990-01-31",
    Target.TAGS: ["customer-sync-canary"],
    Target.OBJECT: {"canary": "yes"},
    Target.NUMBER: 12.5,
    Target.INTEGER: 3,
    Target.CHANNEL: "web",
    Target.BOOLEAN: False,
    Target.LIST: ["canary"],
}
BY_FIELD: dict[str, Any] = {
    "email": "canary@example.com",
    "mobile": "+201000000000",
    "gender": "male",
    "country": "EG",
    "city": "Cairo",
    "zip": "11511",
    "preferredLanguage": "en",
    "displayName": "Canary Customer",
    "firstName": "Canary",
    "lastName": "Customer",
    "osType": "android",
    "lastOrderDate": "2024-06-30",
}


def sample_value(field: str) -> Any:
    """A value the API takes for ``field`` (its name, without ``customerAttributes.``)."""
    kind = target_of(field)
    if kind in BY_KIND:
        return BY_KIND[kind]
    return BY_FIELD.get(field, f"canary-{field}")


def sample_row(layout: Layout, mapping: FieldMapping, customer_id: str) -> dict[str, Any]:
    """A row giving a value to every mapped column and to one column per by-name field.

    ``referrerCode`` is left out: a code that names no referrer can fail the creation.
    """
    row: dict[str, Any] = {}
    seen: set[str] = set()
    for column, slot in layout.by_name.items():
        if slot.path in seen or slot.name == "referrerCode":
            continue
        seen.add(slot.path)
        row[column] = customer_id if slot.name == "customerId" else sample_value(slot.name)
    for slot, source in layout.mapped.items():
        if slot.name != "referrerCode":
            _put(row, source, customer_id if slot.name == "customerId" else sample_value(slot.name))
    for name, source in mapping.attributes.items():
        _put(row, source, f"canary-{name}")
    return row


def _put(row: dict[str, Any], source: Source, value: Any) -> None:
    target = row
    for key in source.path[:-1]:
        inner = target.get(key)
        if not isinstance(inner, dict):
            inner = target[key] = {}
        target = inner
    target[source.path[-1]] = value
