"""``customer-sync check``'s lag line: what the backlog costs at the API budget."""

from __future__ import annotations

from service.config import load_settings
from service.tools.check import catch_up

ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "GAMEBALL_API_KEY": "k",
    "GAMEBALL_SECRET_KEY": "s",
}


def test_a_backlog_is_priced_at_the_documented_quota() -> None:
    # 360 requests per 30 s less 4 % headroom: 11.5 requests/s, 2 a job of 1,000 records.
    line = catch_up(load_settings(ENV), 1_000_000)
    assert "11.5 requests/s for the group" in line
    assert "catching up takes up to 3 min" in line  # 1,000,000 / 5,760 records/s = 174 s
    assert "compaction sends each customer's latest change once" in line


def test_a_small_lag_or_compaction_off_says_less() -> None:
    assert catch_up(load_settings(ENV), 5) == ""
    off = catch_up(load_settings({**ENV, "COMPACTION_MAX_BYTES": "0"}), 1_000_000)
    assert "up to 3 min" in off
    assert "compaction" not in off


def test_the_key_share_slows_the_catch_up() -> None:
    line = catch_up(load_settings({**ENV, "GAMEBALL_KEY_SHARE": "0.5"}), 1_000_000)
    assert "catching up takes up to 6 min" in line
