"""What the simulated API keeps of a customer beside the batch log: the tags its tags call set,
the item fields a lenient server dropped, and the customer as a read-back returns it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from service.gameball.customer import ATTRIBUTES, NESTED_TOP


class Profiles:
    """Tags per customer (attached by ``POST .../customers/{id}/tags``, removed by ``DELETE``;
    every call in order, a removal's tags marked ``-``), and
    the lenient mode's dropped fields, counted by path (``customerAttributes.name``)."""

    def __init__(self) -> None:
        self.tags: dict[str, list[str]] = {}
        self.calls: list[tuple[str, list[str]]] = []
        self.ignored: Counter[str] = Counter()

    def attach_tags(self, customer_id: str, text: str) -> None:
        """``"a, b"`` is added to the customer's tags (``POST``: attach)."""
        tags = _split(text)
        held = self.tags.setdefault(customer_id, [])
        held += [tag for tag in tags if tag not in held]
        self.calls.append((customer_id, tags))

    def remove_tags(self, customer_id: str, text: str) -> None:
        """``"a, b"`` is taken off the customer's tags (``DELETE``: remove)."""
        gone = set(_split(text))
        self.tags[customer_id] = [t for t in self.tags.get(customer_id, []) if t not in gone]
        self.calls.append((customer_id, [f"-{tag}" for tag in sorted(gone)]))

    def log(self) -> dict[str, Any]:
        """``GET /_sim/tags``: each customer's tags, and every call in order."""
        calls = [{"customerId": c, "tags": t} for c, t in self.calls]
        return {"tags": dict(self.tags), "calls": calls}

    def stats(self) -> dict[str, Any]:
        return {"ignored_fields": dict(self.ignored), "tags_set": len(self.calls)}

    def read(self, customer_id: str, item: dict[str, Any] | None, shape: str) -> Any:
        """``GET .../customers/{id}``: the stored item in the nested shape (a flat one nested
        here), with the tags the tags call set, or else those its item carried; ``None``:
        neither a batch nor a tags call ever named the customer."""
        tags = self.tags.get(customer_id)
        if item is None and tags is None:
            return None
        item = item or {"customerId": customer_id}
        if shape == "flat":
            nested = {key: item[key] for key in NESTED_TOP if key in item}
            attributes = {k: v for k, v in item.items() if k not in nested and k != "tags"}
            if attributes:
                nested[ATTRIBUTES] = attributes
            if "tags" in item:
                nested["tags"] = item["tags"]
            item = nested
        return item if tags is None else {**item, "tags": tags}


def _split(text: str) -> list[str]:
    return [tag for tag in map(str.strip, text.split(",")) if tag]


def email_of(customer: dict[str, Any]) -> Any:
    """The address the API checks: the merge key, or else the profile's own."""
    email = customer.get("email")
    if email is None:
        attributes = customer.get(ATTRIBUTES)
        email = attributes.get("email") if isinstance(attributes, dict) else None
    return email
