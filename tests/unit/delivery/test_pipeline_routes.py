"""Routes through the pipeline: each topic decoded with its route's mapping, dead-lettered to
its route's topic (the fact routes: test_pipeline_facts.py)."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.unit.delivery.fakes import FakeApi, rig


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
    assert r.count("customer_sync_route_info", route="shoppers", operation="customers") == 1
    assert r.consumer.committed_offsets() == {("members", 0): 1, ("shoppers", 0): 2}
