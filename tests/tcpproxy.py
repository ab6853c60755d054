"""A small TCP proxy for network faults between processes (this kernel has no netem): one-way delay, a
bandwidth limit, and cutting every connection. Tests and benchmarks put it between two clusters.

It runs its own asyncio loop on a thread; every setting can change while connections are open. Delay is
applied per chunk as it arrives (the pipe stays full: a delay costs latency, not throughput, as on a real
long link); the rate limit is a token bucket per direction of each connection.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass
class Settings:
    delay_s: float = 0.0  # added to every byte, each way
    rate_bytes_s: float | None = None  # per direction of each connection; None: unlimited
    cut: bool = False  # refuse and drop every connection


class TcpProxy:
    def __init__(self, target: tuple[str, int] | None = None, host: str = "127.0.0.1") -> None:
        self.target = target  # may be set after construction (a broker whose advertised port is this one)
        self.settings = Settings()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host, self.port = self._sock.getsockname()[:2]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, name=f"tcpproxy-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set(self, *, delay_s: float | None = None, rate_bytes_s: float | None | bool = False,
            cut: bool | None = None) -> None:
        """Change the delay (seconds each way), the rate (bytes/s per direction; None lifts it) or cut."""
        if delay_s is not None:
            self.settings.delay_s = delay_s
        if rate_bytes_s is not False:
            self.settings.rate_bytes_s = rate_bytes_s  # type: ignore[assignment]
        if cut is not None:
            self.settings.cut = cut
            if cut:
                self._loop.call_soon_threadsafe(self._drop_all)

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # --- the loop's thread -----------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, sock=self._sock))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._drop_all()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.settings.cut or self.target is None:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer),
                             return_exceptions=True)
        for writer in (client_writer, server_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction: each chunk is due ``delay_s`` after it arrived, and leaves within the rate."""
        queue: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        done = False

        async def receive() -> None:
            nonlocal done
            try:
                while data := await reader.read(CHUNK):
                    queue.append((time.monotonic() + self.settings.delay_s, data))
                    arrived.set()
            finally:
                done = True
                arrived.set()

        receiver = asyncio.ensure_future(receive())
        allowance, last = 0.0, time.monotonic()
        try:
            while True:
                if not queue:
                    if done:
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                due, data = queue[0]
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                    continue
                rate = self.settings.rate_bytes_s
                if not rate:  # every chunk due leaves at once: one write and one drain per wake-up, not per
                    ready = []  # chunk (at hundreds of MB/s the wake-ups would cost more than the copy)
                    while queue and queue[0][0] <= now:
                        ready.append(queue.popleft()[1])
                    writer.writelines(ready)
                    await writer.drain()
                    continue
                now = time.monotonic()
                allowance = min(allowance + (now - last) * rate, max(rate / 10, CHUNK))
                last = now
                if allowance < len(data):
                    await asyncio.sleep((len(data) - allowance) / rate)
                    continue
                allowance -= len(data)
                queue.popleft()
                writer.write(data)
                await writer.drain()
        finally:
            receiver.cancel()
            writer.transport.abort()
