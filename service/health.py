"""What /healthz and /readyz report, as plain state the pipeline updates.

Liveness asks "is the loop turning and the consumer answering?": a stuck
loop is what a restart fixes. Readiness asks "can this instance do useful
work?": it has joined the group, the API accepts its credentials, and the
dead-letter breaker is closed (``delivery/breaker.py``). A credentials
problem or an open breaker makes the pod unready, never dead: restarting it
would not fix the keys, and it must keep its data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Health:
    stall_seconds: float = 60.0
    in_group: bool = False
    credentials_ok: bool | None = None  # None until the first answer
    broker_ok: bool = True
    last_loop: float = field(default_factory=time.monotonic)
    last_poll: float = field(default_factory=time.monotonic)
    stopping: bool = False
    dead_letter_breaker_open: bool = False
    schema_registry_unavailable: bool = False

    def alive(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        loop_age = now - self.last_loop
        poll_age = now - self.last_poll
        ok = loop_age < self.stall_seconds and poll_age < self.stall_seconds
        return ok, {"loop_age_seconds": round(loop_age, 3), "poll_age_seconds": round(poll_age, 3)}

    def ready(self) -> tuple[bool, dict[str, object]]:
        ok = self.in_group and self.credentials_ok is True and self.broker_ok and not self.stopping
        ok = ok and not self.dead_letter_breaker_open and not self.schema_registry_unavailable
        return ok, {
            "in_group": self.in_group,
            "credentials_accepted": self.credentials_ok,
            "broker_reachable": self.broker_ok,
            "stopping": self.stopping,
            "dead_letter_breaker_open": self.dead_letter_breaker_open,
            "schema_registry_unavailable": self.schema_registry_unavailable,
        }
