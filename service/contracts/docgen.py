"""The README's configuration table, generated from :class:`service.config.Settings`.

``make readme`` (``python -m service.contracts.docgen``) rewrites the table between the
``<!-- config-table:start -->`` and ``<!-- config-table:end -->`` markers;
``--check`` (and a test) fail when it is stale, so a new setting cannot ship
undocumented.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from service.config import KAFKA_CLIENT_PREFIX, Settings

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    default = info.get_default(call_default_factory=True)
    if default is None or default == {} or default is PydanticUndefined:
        return "—"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple):
        default = ",".join(str(v) for v in default)
    return f"`{default}`"


def config_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        variable = f"{KAFKA_CLIENT_PREFIX}<PROPERTY>" if name == "kafka_client" else name.upper()
        if not info.description:
            raise ValueError(f"Settings.{name} has no description: add one for the README")
        rows.append(f"| `{variable}` | {_default(info)} | {info.description} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    before, start, rest = readme.partition(START)
    _table, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md needs the markers {START} and {END}")
    return f"{before}{START}\n{config_table()}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.contracts.docgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(f"{args.readme}: the configuration table is stale: run `make readme`")
            return 1
        return 0
    if wanted != current:
        args.readme.write_text(wanted, encoding="utf-8")
        print(f"updated the configuration table in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
