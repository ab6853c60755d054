"""States of links, shadow topics and replication tasks."""

from __future__ import annotations

import enum


class LinkState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    FAILING_OVER = "FAILING_OVER"  # a whole-link failover is under way
    FAILED_OVER = "FAILED_OVER"  # every shadow topic of the link is failed over


class ShadowTopicState(enum.StrEnum):
    ACTIVE = "ACTIVE"  # replicating, read-only
    PAUSED = "PAUSED"  # link paused, read-only
    FAILING_OVER = "FAILING_OVER"  # replication stopping, still read-only
    FAILED_OVER = "FAILED_OVER"  # an ordinary writable topic now
    FAULTED = "FAULTED"  # the source topic was recreated, or a partition cannot follow; read-only, data kept
    SOURCE_DELETED = "SOURCE_DELETED"  # the source topic is gone; read-only and readable, can be failed over

    @property
    def read_only(self) -> bool:
        return self is not ShadowTopicState.FAILED_OVER


class TaskState(enum.StrEnum):
    STARTING = "STARTING"
    ACTIVE = "ACTIVE"
    LINK_UNAVAILABLE = "LINK_UNAVAILABLE"  # the source cannot be reached; retrying with backoff
    PAUSED = "PAUSED"
    FAULTED = "FAULTED"
    STOPPED = "STOPPED"
    UNSUPPORTED = "UNSUPPORTED"  # the source cannot answer what this task needs (an older or partial source)
