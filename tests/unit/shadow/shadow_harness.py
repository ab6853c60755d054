"""The shadow side of the fake-source tests: a real ``Broker`` (storage, cluster metadata, ACLs) with its
shadow-link manager, wired in process as ``umbra.app.BrokerApp`` wires them, but with no listener, group
coordinator, admin server or housekeeping; and the waits, log images and append spies the tests share.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fake_source import FakeSource

from umbra.config import BrokerConfig
from umbra.records.batch import PARTITION_LEADER_EPOCH_OFFSET, iter_batch_headers
from umbra.server.broker import Broker
from umbra.shadow.link import ShadowLink
from umbra.shadow.manager import ShadowLinkManager
from umbra.shadow.replicator import PartitionReplicator
from umbra.storage.log import Log

T = TypeVar("T")
LINK = "dr"


@dataclass
class Shadow:
    broker: Broker
    manager: ShadowLinkManager

    @property
    def link(self) -> ShadowLink:
        return self.manager.links[LINK]

    def log(self, topic: str, partition: int = 0) -> Log:
        log = self.broker.logs.get(topic, partition)
        assert log is not None, f"no shadow log for {topic}-{partition}"
        return log

    def topic_state(self, topic: str) -> str | None:
        entry = self.broker.metadata.shadow_topic(topic)
        return None if entry is None else str(entry["state"])

    def replicator(self, topic: str, partition: int = 0) -> PartitionReplicator | None:
        engine = self.link.engine
        return None if engine is None else engine.replicators.get((topic, partition))


async def open_shadow(data_dir: Path, source: FakeSource,
                      before_start: Callable[[Broker], None] | None = None) -> Shadow:
    """A broker over ``data_dir`` whose shadow links talk to ``source``; ``before_start`` runs once its logs
    are open, before its links start (as after a restart)."""
    broker = Broker(BrokerConfig(data_dir=data_dir, log_cleaner_enabled=False))
    broker.open_logs()  # in BrokerApp.start's order: logs, then the shadow layer as the broker's topic guard
    # The fake is no SourceCluster, but answers every call umbra.shadow makes on one.
    manager = ShadowLinkManager(broker, connect_source=source.connect)  # type: ignore[arg-type]
    broker.topic_guard = manager
    if before_start is not None:
        before_start(broker)
    await manager.start()
    return Shadow(broker, manager)


async def close_shadow(shadow: Shadow) -> None:
    """Stop as BrokerApp.stop does: the links first, then storage (flushed)."""
    await shadow.manager.stop()
    shadow.broker.close_storage()


def link_doc(prefixes: tuple[str, ...] = ("",), *, acls: bool = False) -> dict[str, Any]:
    """A link spec with short intervals: the fake source answers at once."""
    return {"name": LINK,
            "source": {"bootstrap_servers": ["fake-source:9092"], "client": {"fetch_max_wait_ms": 100}},
            "topics": {"sync_interval": "200ms", "filters": [{"include": "prefix", "name": p} for p in prefixes]},
            "consumer_offsets": {"enabled": False},
            "acls": {"enabled": acls, "interval": "100ms"}}


async def eventually(check: Callable[[], T], what: str | Callable[[], str], timeout_s: float = 10.0) -> T:
    """Poll ``check`` until it returns something true; fail after ``timeout_s`` saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for: {what() if callable(what) else what}")
        await asyncio.sleep(0.01)


async def caught_up(shadow: Shadow, source: FakeSource, topic: str, partition: int = 0) -> None:
    """Wait until the shadow partition's high watermark is the source's."""
    source_log = source.log((topic, partition))

    def at_source_end() -> bool:
        log = shadow.broker.logs.get(topic, partition)
        return log is not None and log.high_watermark == source_log.high_watermark

    await eventually(at_source_end, lambda: f"{topic}-{partition} at the source's high watermark "
                                            f"{source_log.high_watermark}: {status_of(shadow, topic, partition)}")


def status_of(shadow: Shadow, topic: str, partition: int = 0) -> dict[str, Any] | None:
    """The partition's entry in the link's status (what operators see)."""
    for entry in shadow.manager.status(LINK)["partitions"]:
        if (entry["topic"], entry["partition"]) == (topic, partition):
            return dict(entry)
    return None


def batch_images(log: Log) -> list[bytes]:
    """The log's batches from its log start, each with its partition leader epoch masked: the one field a
    shadow stamps with its own value (it is outside the CRC)."""
    if log.log_end_offset <= log.log_start_offset:
        return []
    data = bytes(log.read(log.log_start_offset, 1 << 30))
    images = []
    for header in iter_batch_headers(data):
        image = bytearray(data[header.position:header.position + header.size_in_bytes])
        image[PARTITION_LEADER_EPOCH_OFFSET:PARTITION_LEADER_EPOCH_OFFSET + 4] = b"\xff" * 4
        images.append(bytes(image))
    return images


def base_offsets(log: Log) -> list[int]:
    if log.log_end_offset <= log.log_start_offset:
        return []
    return [h.base_offset for h in iter_batch_headers(bytes(log.read(log.log_start_offset, 1 << 30)))]


@dataclass
class AppendSpy:
    """Wraps a shadow log's ``append_at_offsets`` (the replication append, on the link's writer thread): records
    the topic's shadow state when each append begins and when it has landed, and can hold appends at a gate."""

    broker: Broker
    log: Log
    calls: list[tuple[str | None, str | None, int]] = field(default_factory=list)  # (state before, after, offset)
    gate: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)  # an append is waiting at the gate

    def __post_init__(self) -> None:
        self.gate.set()
        original = self.log.append_at_offsets

        def state() -> str | None:
            entry = self.broker.metadata.shadow_topic(self.log.topic)
            return None if entry is None else str(entry["state"])

        def append(record_set: Any, *, expected_start_offset: int, leader_epoch: int | None,
                   now_ms: int | None = None) -> Any:
            before = state()
            if not self.gate.is_set():
                self.held.set()
                assert self.gate.wait(20), "the test never opened the gate"
            result = original(record_set, expected_start_offset=expected_start_offset, leader_epoch=leader_epoch,
                              now_ms=now_ms)
            self.calls.append((before, state(), expected_start_offset))
            return result

        self.log.append_at_offsets = append  # type: ignore[method-assign]

    def hold(self) -> None:
        self.held.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()
