"""Bounds on what clients can make the broker hold: request bytes queued, and connections.

:class:`RequestMemoryPool` is Kafka's ``queued.max.request.bytes``: every request's bytes are taken from it
while they are buffered and given back once the request is handled. A connection that needs room the pool
does not have stops reading (its socket's buffers fill, and TCP pushes back on the client) and is woken, in
the order they waited, as requests elsewhere finish. :class:`ConnectionLimits` is ``max.connections`` and
``max.connections.per.ip``: a connection over either is closed as soon as it is accepted.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("umbra.memory")
_REFUSAL_LOG_INTERVAL_S = 10.0


class RequestMemoryPool:
    """Implements ``umbra.protocol.framing.FrameBudget``; single-threaded (the event loop's)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.waits = 0  # how many times a connection had to wait for room (a metric)
        self._waiters: deque[Callable[[], None]] = deque()

    def reserve(self, size: int, *, force: bool = False) -> bool:
        if not force and self.used + size > self.capacity:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size
        if self._waiters and self.used < self.capacity:
            # Each waiter tries once; one that still finds no room waits again (at the back).
            for _ in range(len(self._waiters)):
                if self.used >= self.capacity or not self._waiters:
                    break
                self._waiters.popleft()()

    def wait(self, resume: Callable[[], None]) -> None:
        """Call ``resume`` once some room is given back."""
        self.waits += 1
        self._waiters.append(resume)

    def forget(self, resume: Callable[[], None]) -> None:
        """A waiting connection closed."""
        try:
            self._waiters.remove(resume)
        except ValueError:
            pass


class ConnectionLimits:
    def __init__(self, max_connections: int, max_per_ip: int) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.total = 0
        self.by_ip: dict[str, int] = {}
        self.refused = 0
        self._last_log = 0.0

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``, or refuse it (the caller closes it) when over a limit."""
        if self.total >= self.max_connections or self.by_ip.get(ip, 0) >= self.max_per_ip:
            self.refused += 1
            now = time.monotonic()
            if now - self._last_log >= _REFUSAL_LOG_INTERVAL_S:
                self._last_log = now
                log.warning("refusing connections: %d open (max_connections %d), %d from %s "
                            "(max_connections_per_ip %d); %d refused so far", self.total, self.max_connections,
                            self.by_ip.get(ip, 0), ip, self.max_per_ip, self.refused)
            return False
        self.total += 1
        self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        return True

    def leave(self, ip: str) -> None:
        self.total -= 1
        left = self.by_ip.get(ip, 1) - 1
        if left:
            self.by_ip[ip] = left
        else:
            self.by_ip.pop(ip, None)
