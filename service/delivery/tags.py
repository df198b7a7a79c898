"""Tags: the one part of a nested customer that travels by a call of its own.

Gameball's customer schema has no ``tags`` field (``GAMEBALL-API.md`` §2): tags are attached
with ``POST /api/{version}/integrations/customers/{customerId}/tags``, body
``{"tags": "vip, newsletter"}``, and removed with ``DELETE`` on the same path and body (the
OpenAPI: attaching adds to what the customer has), one customer a call, never batched. With
``TAGS_SYNC`` ``changed`` (the default) or ``always``, the decoder keeps a change's tags beside
its item (``PendingRecord.tags``), whether they need sending (``tags_changed``), and the tags
its ``before`` row had that its ``after`` row has not (``tags_removed``: known only where
Debezium sends ``before``, under ``REPLICA IDENTITY FULL``). This step sends them after the
change's job reported it successful:

* only for a record its job delivered, so the customer exists at the API;
* while the customer is still checked out to that batch (``batching.py``): its next change,
  and so its next tag set, cannot go out before this one is settled, so an older tag set is
  never sent after a newer one;
* within the group-wide rate budget, behind every job request (``budget.PRIORITIES``);
* a transient failure is retried by the client like any other; a rejection (400, 404, 413,
  422) dead-letters the record as ``tags_rejected`` with the API's words;
* so a record settles only once its job and its tag call both have. One whose partition
  went meanwhile is neither settled nor given back: the partition's next owner redoes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from service.delivery.edges import GameballApi
from service.delivery.records import PendingRecord
from service.delivery.verdicts import Rejection, Verdicts
from service.errors import SubmissionWithdrawn, TagsRejected
from service.labels import DeadLetterReason

TAG_CALLS_IN_FLIGHT = 8
"""Tag calls of one batch sent at once; the rate budget paces them anyway."""


def needs_tags(record: PendingRecord) -> bool:
    """Whether the record's tags still have to be sent for it to settle."""
    return (record.tags is not None and record.tags_changed) or bool(record.tags_removed)


class TagSender:
    """Sends the tags of the records a job delivered, and says what became of them."""

    def __init__(
        self,
        client: GameballApi,
        owns: Callable[[PendingRecord], bool],
        *,
        in_flight: int = TAG_CALLS_IN_FLIGHT,
    ) -> None:
        self._client = client
        self._owns = owns
        self._in_flight = in_flight

    async def deliver(self, verdicts: Verdicts) -> None:
        """Send the tags of ``verdicts.succeeded`` that need it; move what the API refused."""
        due = [record for record in verdicts.succeeded if needs_tags(record)]
        if not due:
            return
        gate = asyncio.Semaphore(self._in_flight)
        outcomes = await asyncio.gather(*(self._send(record, gate) for record in due))
        failed = {
            id(record) for record, sent in zip(due, outcomes, strict=True) if sent is not True
        }
        if not failed:
            return
        verdicts.succeeded = [r for r in verdicts.succeeded if id(r) not in failed]
        verdicts.rejected += [outcome for outcome in outcomes if isinstance(outcome, Rejection)]

    async def _send(self, record: PendingRecord, gate: asyncio.Semaphore) -> Rejection | bool:
        """``True``: sent; a :class:`Rejection`: refused; ``False``: no longer ours."""
        attach = record.tags if record.tags_changed and record.tags else ()
        async with gate:
            try:
                await self._client.set_tags(
                    record.customer_id,
                    attach,
                    record.tags_removed,
                    wanted=lambda: self._owns(record),
                )
            except TagsRejected as exc:
                return Rejection(record, DeadLetterReason.TAGS_REJECTED, str(exc), None)
            except SubmissionWithdrawn:
                return False
        return True
