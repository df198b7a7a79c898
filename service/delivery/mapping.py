"""Row-to-customer field mapping: defaults by name, or ``FIELD_MAPPING_FILE``."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import yaml

from service.errors import ConfigError

API_FIELDS = (
    "customerId",
    "email",
    "name",
    "gender",
    "dateOfBirth",
    "joinDate",
    "tags",
    "custom",
    "mobile",
    "displayName",
    "firstName",
    "lastName",
    "country",
    "city",
    "referrerCode",
)


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class FieldMapping:
    """``apiField -> dotted source path``; fields not mapped fall back to name matching."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = {field: tuple(path.split(".")) for field, path in paths.items()}


def load_field_mapping(path: str | Path) -> FieldMapping:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"FIELD_MAPPING_FILE {str(file)!r} cannot be read: {exc.strerror}"
        ) from None
    try:
        data = orjson.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())  # YAML's message spans lines; a log line must not
        raise ConfigError(f"FIELD_MAPPING_FILE {str(file)!r} is not valid: {detail}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise ConfigError(
            f"FIELD_MAPPING_FILE {str(file)!r} must map API field names to source column paths "
            "(apiField: source.column.path)"
        )
    return FieldMapping(data)
