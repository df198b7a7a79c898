"""Routes through the pipeline: each topic decoded with its route's mapping, dead-lettered to
its route's topic, and a route of an operation not delivered yet stops start-up."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from service.config import load_settings
from service.delivery.pipeline import Pipeline
from service.errors import ConfigError
from tests.unit.delivery.fakes import ENV, FakeApi, rig


class ItemsApi(FakeApi):
    """Also keeps each item the API was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, object]] = []

    async def submit(self, body: bytes, **kwargs: object) -> str:  # type: ignore[override]
        self.items += orjson.loads(body)["body"]
        return await super().submit(body, **kwargs)  # type: ignore[arg-type]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return str(path)


async def test_each_customers_route_decodes_its_topics_with_its_own_mapping(
    tmp_path: Path,
) -> None:
    routes = write(
        tmp_path,
        """\
routes:
  - name: members
    operation: customers
    topics: [members]
    mapping: {customerId: member_no, email: mail}
  - name: shoppers
    operation: customers
    topics: [shoppers]
    mapping: {customerId: shopper_id, email: contact}
    dead_letter_topic: shoppers.dlq
""",
    )
    api = ItemsApi()
    r = rig({"members": 1, "shoppers": 1}, env={"ROUTES_FILE": routes}, api=api)
    r.consumer.append(("members", 0), orjson.dumps({"member_no": 7, "mail": "m@x.io"}))
    r.consumer.append(("shoppers", 0), orjson.dumps({"shopper_id": "s1", "contact": "s@x.io"}))
    r.consumer.append(("shoppers", 0), orjson.dumps({"contact": "no id"}))  # no customerId
    await r.run()
    assert sorted((i["customerId"], i["email"]) for i in api.items) == [
        ("7", "m@x.io"),
        ("s1", "s@x.io"),
    ]
    assert r.producer.topics == ["shoppers.dlq"], "its route's dead-letter topic"
    assert r.consumer.committed_offsets() == {("members", 0): 1, ("shoppers", 0): 2}


def test_a_route_of_an_operation_not_delivered_yet_stops_start_up(tmp_path: Path) -> None:
    routes = write(
        tmp_path,
        """\
routes:
  - {name: members, operation: customers, topics: [members]}
  - name: orders
    operation: orders
    topics: [orders]
    mapping: {customerId: customer_id, orderId: id, orderDate: at, totalPaid: total}
""",
    )
    environ = {k: v for k, v in ENV.items() if k != "KAFKA_SOURCE_TOPICS"}
    settings = load_settings({**environ, "ROUTES_FILE": routes})
    with pytest.raises(ConfigError, match="route 'orders': operation 'orders' is validated but"):
        Pipeline.from_settings(settings)
