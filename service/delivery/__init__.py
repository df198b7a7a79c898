"""The delivery path: every module a record passes through, from Kafka to a committed offset.

consume (``consumer``) → track, decode, route (``ingest``, ``offsets``,
``decoding``, ``mapping``) → batch (``batching``) → submit and track a job
(``jobs``) → settle (``settlement``, ``deadletter``) → commit (``commits``),
with partitions arriving and leaving in ``rebalance``. ``pipeline`` runs them
and is the place to start reading; ``assembly`` builds them, and ``edges``
names the three things outside (the consumer, the API, the dead-letter
producer) as the Protocols they stand behind.

Imports from here go down only: to :mod:`service.gameball` (the API edge) and
the shared modules at the top of the package, never to the tools.
"""
