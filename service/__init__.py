"""customer-sync: a Kafka CDC sink for the Gameball Batch Customer API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("customer-sync")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"
