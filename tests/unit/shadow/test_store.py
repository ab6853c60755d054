"""ShadowStore on a cluster: the controller's changes reach the cluster documents key by key, and a version of a
document read from etcd never undoes a change made here and not yet published."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from umbra.cluster.metadata import MetadataStore
from umbra.shadow.store import LINKS_DOCUMENT, TOPICS_DOCUMENT, ShadowStore


class DocumentsOnly:
    """The part of the etcd control plane the store uses: cluster documents, changed by compare-and-swap."""

    clustered = True

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.listeners: dict[str, list[Callable[[Any], None]]] = {}

    def subscribe_document(self, name: str, listener: Callable[[Any], None]) -> None:
        self.listeners.setdefault(name, []).append(listener)

    async def update_document(self, name: str, change: Callable[[Any], Any]) -> Any:
        self.documents[name] = change(self.documents.get(name))
        return self.documents[name]

    def deliver(self, name: str, document: Any) -> None:
        """Another broker's poll: this version of the document is read."""
        for listener in self.listeners.get(name, []):
            listener(document)


def entry(state: str) -> dict[str, Any]:
    return {"link": "dr", "state": state, "reason": ""}


def test_publish_merges_key_by_key_and_stale_versions_never_undo_pending_changes(tmp_path: Path) -> None:
    control = DocumentsOnly()
    metadata = MetadataStore(tmp_path)
    store = ShadowStore(metadata, control)  # type: ignore[arg-type]

    # Another broker's entry is already in etcd; this one adds its own and publishes: both are kept.
    control.documents[TOPICS_DOCUMENT] = {"other": entry("ACTIVE")}
    store.put_topic("orders", entry("ACTIVE"))
    assert store.unpublished
    asyncio.run(store.publish())
    assert control.documents[TOPICS_DOCUMENT] == {"other": entry("ACTIVE"), "orders": entry("ACTIVE")}
    assert not store.unpublished

    # A failover marks the topic here; before it is published, an older version of the document is read:
    # the pending change stays.
    store.put_topic("orders", entry("FAILING_OVER"))
    control.deliver(TOPICS_DOCUMENT, {"other": entry("ACTIVE"), "orders": entry("ACTIVE")})
    assert store.topic("orders") == entry("FAILING_OVER")
    assert store.topic("other") == entry("ACTIVE")  # the rest of the document is taken
    asyncio.run(store.publish())
    assert control.documents[TOPICS_DOCUMENT]["orders"] == entry("FAILING_OVER")

    # Once published, etcd's versions are the record: a deletion there (another controller) is taken here.
    control.deliver(TOPICS_DOCUMENT, {"orders": entry("FAILED_OVER")})
    assert store.topics() == {"orders": entry("FAILED_OVER")}

    # Deleting a link here deletes it in etcd, leaving the others.
    control.documents[LINKS_DOCUMENT] = {"dr": {"spec": {}}, "dr2": {"spec": {}}}
    control.deliver(LINKS_DOCUMENT, control.documents[LINKS_DOCUMENT])
    assert set(store.links()) == {"dr", "dr2"}
    store.delete_link("dr")
    asyncio.run(store.publish())
    assert control.documents[LINKS_DOCUMENT] == {"dr2": {"spec": {}}}
    metadata.close()


def test_a_single_broker_has_nothing_to_publish(tmp_path: Path) -> None:
    class Local(DocumentsOnly):
        clustered = False

    control = Local()
    metadata = MetadataStore(tmp_path)
    store = ShadowStore(metadata, control)  # type: ignore[arg-type]
    store.put_topic("orders", entry("ACTIVE"))
    assert not store.unpublished
    asyncio.run(store.publish())
    assert control.documents == {} and store.topic("orders") == entry("ACTIVE")
    metadata.close()
