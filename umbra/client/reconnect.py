"""A connection that reconnects on demand, with exponential backoff and jitter between attempts."""

from __future__ import annotations

import asyncio
import random
import time

from umbra.client.connection import BrokerConnection
from umbra.client.errors import ClientConnectionError, ClientError, ClientTimeout
from umbra.client.settings import ConnectionSettings


class Backoff:
    """Exponential backoff with +-``jitter`` proportional noise, so many clients do not retry in step."""

    def __init__(self, initial_s: float = 0.1, maximum_s: float = 10.0, multiplier: float = 2.0,
                 jitter: float = 0.2, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.multiplier = multiplier
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        # The exponent is capped: after enough failures the delay is the maximum anyway, and an
        # uncapped power overflows a float after ~1000 failures (a source down for hours).
        base = min(self.maximum_s, self.initial_s * self.multiplier ** min(self.failures, 64))
        self.failures += 1
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.failures = 0


class ReconnectingConnection:
    """Hands out a live :class:`BrokerConnection` to ``host:port``, opening a new one when the last died.

    After a failed connect, the next :meth:`get` first waits out the backoff delay, so a caller that
    retries in a loop against a dead broker does not spin.
    """

    def __init__(self, host: str, port: int, settings: ConnectionSettings, *, node_id: int | None = None,
                 backoff: Backoff | None = None) -> None:
        self.host = host
        self.port = port
        self.node_id = node_id
        self.settings = settings
        self.backoff = backoff or Backoff()
        self._connection: BrokerConnection | None = None
        self._retry_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected

    @property
    def backing_off(self) -> bool:
        """The last connect failed and its backoff delay has not run out: :meth:`get` would wait first."""
        return self._retry_at > time.monotonic()

    async def get(self) -> BrokerConnection:
        if self._connection is not None and self._connection.connected:
            return self._connection
        async with self._lock:
            if self._connection is not None:
                if self._connection.connected:
                    return self._connection
                await self._connection.close()
                self._connection = None
                # A connection that worked and then died is retried at once; only failed connects back off.
            delay = self._retry_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            connection = BrokerConnection(self.host, self.port, self.settings, node_id=self.node_id)
            try:
                await connection.connect()
            except ClientError as exc:
                self._retry_at = time.monotonic() + self.backoff.next_delay()
                if isinstance(exc, (ClientConnectionError, ClientTimeout)):
                    raise
                raise ClientConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
            self.backoff.reset()
            self._retry_at = 0.0
            self._connection = connection
            return connection

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
