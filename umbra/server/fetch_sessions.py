"""Fetch sessions (KIP-227): incremental fetches that name only what changed.

A session remembers, per partition, the fetch position and the last high
watermark, log start offset and last stable offset sent, so an incremental
response can leave out every partition with nothing new.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from umbra.errors import FetchSessionIdNotFound, InvalidFetchSessionEpoch

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
MAX_SESSIONS = 1000
IDLE_EVICTION_S = 120.0  # a session unused this long is dropped (its client reconnected or went away)

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class SessionPartition:
    fetch_offset: int
    max_bytes: int
    topic_id: object = None
    sent_high_watermark: int = -1
    sent_log_start_offset: int = -1
    sent_last_stable_offset: int = -1


@dataclass(slots=True)
class FetchSession:
    session_id: int
    epoch: int
    partitions: OrderedDict[TopicPartition, SessionPartition] = field(default_factory=OrderedDict)
    last_used: float = field(default_factory=time.monotonic)

    def next_epoch(self) -> None:
        self.epoch = 1 if self.epoch >= 2**31 - 1 else self.epoch + 1


class FetchSessionCache:
    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._max = max_sessions
        self._ids = itertools.count(random.randint(1, 1 << 20))

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> FetchSession:
        session_id = next(self._ids) & 0x7FFFFFFF or next(self._ids)
        session = FetchSession(session_id, 1)
        self._sessions[session_id] = session
        idle_before = time.monotonic() - IDLE_EVICTION_S
        while self._sessions and (len(self._sessions) > self._max
                                  or next(iter(self._sessions.values())).last_used < idle_before):
            self._sessions.popitem(last=False)
        return session

    def remove(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)

    def get(self, session_id: int, epoch: int) -> FetchSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise FetchSessionIdNotFound(f"fetch session {session_id} is not known")
        if session.epoch != epoch:
            raise InvalidFetchSessionEpoch(f"fetch session {session_id} expects epoch {session.epoch}, got {epoch}")
        self._sessions.move_to_end(session_id)
        session.last_used = time.monotonic()
        return session
