"""``customer-sync check``'s schema-registry lines: can the registry be asked, and what it
holds for the source topics.

Only with ``SCHEMA_REGISTRY_URL`` set. Unreachable, or refusing the credentials, fails the
check: the service would hold every Avro record, unready, until it answers. The subjects are
information: Debezium's converters name a topic's schemas ``<topic>-value`` and ``<topic>-key``
(Confluent's ``TopicNameStrategy``); a topic without them may simply carry JSON.
"""

from __future__ import annotations

from service.config import Settings
from service.tools.check_results import FAIL, INFO, OK, Result

NAME = "schema registry"


def check_registry(
    settings: Settings, timeout: float, topics: tuple[str, ...] | None = None
) -> list[Result]:
    """The registry answers with the credentials; the subjects of ``topics`` (default: the
    source topics of the settings), for information."""
    config = settings.schema_registry_config()
    if config is None:
        return []
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    url = settings.schema_registry_url
    try:
        with SchemaRegistryClient({**config, "timeout": max(1, round(timeout))}) as client:
            subjects = sorted(client.get_subjects())
    except SchemaRegistryError as exc:
        if exc.http_status_code in (401, 403):
            detail = (
                f"{url} refused the credentials (HTTP {exc.http_status_code}): check "
                "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
            )
        else:
            detail = f"{url} answered {exc}"
        return [Result(FAIL, NAME, detail)]
    except Exception as exc:  # noqa: BLE001 - connect, TLS, DNS, timeout: one sentence each
        return [Result(FAIL, NAME, f"{url} cannot be reached: {type(exc).__name__}: {exc}")]
    results = [Result(OK, NAME, f"{url} answers ({len(subjects)} subjects)")]
    for topic in topics if topics is not None else settings.kafka_source_topics:
        own = [s for s in subjects if s in (f"{topic}-value", f"{topic}-key")]
        detail = ", ".join(own) if own else "none (its values may be JSON)"
        results.append(Result(INFO, f"subjects of {topic}", detail))
    return results
