"""Gameball's rate limits, the strict way: per API key, every request of every client, sliding.

The documentation gives a rate per second and a quota per 30 seconds per
resource, answered with 429 past either, and does not say whether the API
counts in fixed or sliding windows. The simulator slides: a sliding window
refuses everything a fixed one would, and more (a burst across a fixed
window's edge), so a client that meets no 429 here meets none from either.
A refused request is not counted: it costs the client the round trip, not
the quota.
"""

from __future__ import annotations

import bisect
import math


class KeyLimits:
    """Arrival times of the requests admitted in the last window, per API key."""

    def __init__(self) -> None:
        self._admitted: dict[str, list[float]] = {}

    def admit(
        self,
        api_key: str,
        now: float,
        *,
        per_second: int,
        per_window: int,
        window_seconds: float,
    ) -> float | None:
        """Admit a request at ``now`` (``None``), or say in how many seconds it would be.

        A limit of 0 is no limit. A request counts in every window
        ``(t - seconds, t]`` it falls in.
        """
        windows = [
            (limit, seconds)
            for limit, seconds in ((per_second, 1.0), (per_window, window_seconds))
            if limit
        ]
        if not windows:
            return None
        admitted = self._admitted.setdefault(api_key, [])
        horizon = max(seconds for _, seconds in windows)
        del admitted[: bisect.bisect_right(admitted, now - horizon)]
        wait = 0.0
        for limit, seconds in windows:
            inside = len(admitted) - bisect.bisect_right(admitted, now - seconds)
            if inside >= limit:
                # Room again once the oldest request that must leave has left.
                wait = max(wait, admitted[len(admitted) - limit] + seconds - now)
        if wait > 0:
            return math.ceil(wait * 1000) / 1000
        admitted.append(now)
        return None
