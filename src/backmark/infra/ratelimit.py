"""A per-client token bucket: at most ``rate`` requests a second on average, bursts up to ``burst``.

Clients are keys (an address, a token's fingerprint). The table of buckets is bounded: past
``max_clients`` the least recently seen client is forgotten (its next request starts with a full
bucket), so a flood of new addresses costs bounded memory and constant time per request; stopping
such a flood is a job for a reverse proxy or firewall in front.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimit:
    """``take(client)``: 0.0 if the request may go ahead, else the seconds until it may."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        with self._lock:
            now = self._clock()
            tokens, when = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)  # the least recently seen client
            return wait
