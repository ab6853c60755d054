"""What the broker core asks of the layers built around it (they implement these; the broker never imports
them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from umbra.cluster.configs import TopicMutation
    from umbra.cluster.metadata import TopicMetadata


class TopicGuard(Protocol):
    """Rules a layer keeps for its topics: the shadow-link manager refuses writes to shadow topics until they
    are failed over, and admin changes that would break replication."""

    def check_produce(self, topic: TopicMetadata) -> None:
        """Raise a KafkaError if clients may not write to ``topic``."""

    def topic_policy(self, topic: TopicMetadata, mutation: TopicMutation, changed: frozenset[str]) -> None:
        """Raise a KafkaError if ``mutation`` (of the configs ``changed``) is not allowed on ``topic``."""
