"""The simulator's customer shapes: strict refuses what the shape lacks, lenient drops and
counts it, and the tags call and the read-back serve the tags sync and the canary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.gameball.simulator.cli import banner

KEYS = {"APIKey": "demo-api-key", "SecretKey": "demo-secret-key"}
CREATE = "/api/v4.0/integrations/batch/customers"
CUSTOMERS = "/api/v4.0/integrations/customers"
NESTED = {
    "customerId": "n1",
    "email": "n1@example.com",
    "customerAttributes": {
        "displayName": "Ada",
        "email": "n1@example.com",
        "totalOrders": 3,
        "channel": "web",
        "custom": {"tier": "gold"},
    },
}
FLAT = {"customerId": "f1", "email": "f1@example.com", "name": "Ada", "city": "Cairo"}


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    config: SimulatorConfig = getattr(request, "param", SimulatorConfig())
    with (
        RunningSimulator(config) as simulator,
        httpx.Client(base_url=simulator.base_url, headers=KEYS, timeout=10) as http,
    ):
        yield http


def applied(http: httpx.Client) -> dict[str, Any]:
    entries = http.get("/_sim/applied").json()["applied"]
    return {entry["customerId"]: entry["customer"] for entry in entries}


def test_strict_nested_refuses_the_flat_item_naming_each_field(client: httpx.Client) -> None:
    response = client.post(CREATE, json={"body": [NESTED, FLAT]})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "body[1] (customerId=f1): name: not a field of the nested customer" in message
    assert "body[1] (customerId=f1): city: not a field of the nested customer" in message
    assert "body[0]" not in message
    assert client.get("/_sim/stats").json()["jobs_created"] == 0


def test_strict_nested_stores_the_nested_item_field_by_field(client: httpx.Client) -> None:
    assert client.post(CREATE, json={"body": [NESTED]}).status_code == 200
    assert applied(client) == {"n1": NESTED}
    bad = {**NESTED, "customerAttributes": {"channel": "fax", "nickname": "x"}}
    message = client.post(CREATE, json={"body": [bad]}).json()["message"]
    assert "customerAttributes.channel: Input should be 'mobile', 'pos', 'web'" in message
    assert "customerAttributes.nickname: not a field of the nested customer" in message


@pytest.mark.parametrize("client", [SimulatorConfig(strict=False)], indirect=True, ids=["lenient"])
def test_lenient_accepts_drops_and_counts_what_the_shape_lacks(client: httpx.Client) -> None:
    odd = {**NESTED, "customerId": "n2", "customerAttributes": {"displayName": "B", "nick": 1}}
    assert client.post(CREATE, json={"body": [FLAT, odd]}).status_code == 200
    stored = applied(client)
    assert stored["f1"] == {"customerId": "f1", "email": "f1@example.com"}  # the profile lost
    assert stored["n2"]["customerAttributes"] == {"displayName": "B"}
    stats = client.get("/_sim/stats").json()
    assert stats["ignored_fields"] == {"name": 1, "city": 1, "customerAttributes.nick": 1}
    assert (stats["customer_shape"], stats["strict"]) == ("nested", False)


@pytest.mark.parametrize(
    "client", [SimulatorConfig(customer_shape="flat")], indirect=True, ids=["flat"]
)
def test_strict_flat_refuses_the_nested_item_and_reads_back_nested(client: httpx.Client) -> None:
    response = client.post(CREATE, json={"body": [NESTED]})
    assert response.status_code == 400
    assert "customerAttributes: not a field of the flat customer" in response.json()["message"]
    assert client.post(CREATE, json={"body": [{**FLAT, "tags": ["vip"]}]}).status_code == 200
    read = client.get(f"{CUSTOMERS}/f1").json()
    assert read == {
        "customerId": "f1",
        "email": "f1@example.com",
        "customerAttributes": {"name": "Ada", "city": "Cairo"},
        "tags": ["vip"],
    }


def test_tags_are_attached_and_removed_and_the_read_back_shows_them(client: httpx.Client) -> None:
    """The OpenAPI: POST attaches tags to what the customer has, DELETE removes them."""
    assert client.post(CREATE, json={"body": [NESTED]}).status_code == 200
    assert client.get(f"{CUSTOMERS}/n1").json() == NESTED
    answer = client.post(f"{CUSTOMERS}/n1/tags", json={"tags": "vip, newsletter"})
    assert answer.status_code == 200
    assert client.get(f"{CUSTOMERS}/n1").json() == {**NESTED, "tags": ["vip", "newsletter"]}
    assert client.post(f"{CUSTOMERS}/n1/tags", json={"tags": "gold"}).status_code == 200
    removed = client.request("DELETE", f"{CUSTOMERS}/n1/tags", json={"tags": "newsletter"})
    assert removed.status_code == 200
    assert client.get(f"{CUSTOMERS}/n1/details").json()["tags"] == ["vip", "gold"]
    log = client.get("/_sim/tags").json()
    assert log["tags"] == {"n1": ["vip", "gold"]}
    assert log["calls"] == [
        {"customerId": "n1", "tags": ["vip", "newsletter"]},
        {"customerId": "n1", "tags": ["gold"]},
        {"customerId": "n1", "tags": ["-newsletter"]},
    ]
    assert client.get("/_sim/stats").json()["requests"]["tags"] == {"200": 3}


def test_the_tags_call_refuses_a_list_and_an_unknown_customer_is_404(
    client: httpx.Client,
) -> None:
    refused = client.post(f"{CUSTOMERS}/n1/tags", json={"tags": ["vip"]})
    assert refused.status_code == 400
    assert "comma-separated" in refused.json()["message"]
    missing = client.get(f"{CUSTOMERS}/nobody")
    assert missing.status_code == 404
    assert missing.json()["code"] == 7000
    unauthorised = httpx.post(
        f"{client.base_url}{CUSTOMERS}/n1/tags", json={"tags": "a"}, timeout=5
    )
    assert unauthorised.status_code == 401


def test_the_banner_says_which_shape_and_mode_it_serves() -> None:
    text = banner(SimulatorConfig(customer_shape="flat", strict=False), "http://x")
    assert "customers     flat shape, lenient" in text
    assert "nested shape, strict" in banner(SimulatorConfig(), "http://x")
