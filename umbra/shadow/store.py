"""Where shadow links and shadow-topic states are kept: this broker's metadata store and, on a cluster, two
cluster documents in etcd (``shadow_links`` and ``shadow_topics``).

Reads are always this broker's copy. On a cluster only the controller changes them (every admin operation is
sent there, and the link controller runs there): it changes its copy at once, so its own next read sees the
change, and :meth:`ShadowStore.publish` writes what changed to etcd by compare-and-swap, key by key. Every other
broker takes each new version of the documents as it reads them. A change not yet published is never undone by
an older version read meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from umbra.cluster.control import ControlPlane
    from umbra.cluster.metadata import MetadataStore

log = logging.getLogger("umbra.shadow")

LINKS_DOCUMENT = "shadow_links"
TOPICS_DOCUMENT = "shadow_topics"
Entry = dict[str, Any]


class ShadowStore:
    def __init__(self, metadata: MetadataStore, control: ControlPlane) -> None:
        self.metadata = metadata
        self.control = control
        # Keys changed here and not yet in etcd -> how many times (a change made while publishing stays pending).
        self._pending: dict[str, dict[str, int]] = {LINKS_DOCUMENT: {}, TOPICS_DOCUMENT: {}}
        self._publish_lock = asyncio.Lock()
        if control.clustered:
            control.subscribe_document(LINKS_DOCUMENT, lambda doc: self._take(LINKS_DOCUMENT, doc))
            control.subscribe_document(TOPICS_DOCUMENT, lambda doc: self._take(TOPICS_DOCUMENT, doc))

    # --- reads ---------------------------------------------------------
    def links(self) -> dict[str, Entry]:
        return self.metadata.shadow_links()

    def topics(self) -> dict[str, Entry]:
        return self.metadata.shadow_topics()

    def topic(self, name: str) -> Entry | None:
        return self.metadata.shadow_topic(name)

    # --- writes (this copy at once; etcd by publish) ---------------------
    def put_link(self, name: str, entry: Entry) -> None:
        self.metadata.put_shadow_link(name, entry)
        self._mark(LINKS_DOCUMENT, name)

    def delete_link(self, name: str) -> None:
        self.metadata.delete_shadow_link(name)
        self._mark(LINKS_DOCUMENT, name)

    def put_topic(self, name: str, entry: Entry) -> None:
        self.metadata.put_shadow_topic(name, entry)
        self._mark(TOPICS_DOCUMENT, name)

    def delete_topic(self, name: str) -> None:
        self.metadata.delete_shadow_topic(name)
        self._mark(TOPICS_DOCUMENT, name)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One write of the local file for many changes (a failover of 1,000 topics)."""
        with self.metadata.batch():
            yield

    def _mark(self, document: str, key: str) -> None:
        if self.control.clustered:
            pending = self._pending[document]
            pending[key] = pending.get(key, 0) + 1

    @property
    def unpublished(self) -> bool:
        return any(self._pending.values())

    async def publish(self) -> None:
        """Write every change made here to the cluster documents (nothing to do on a single broker, where the
        metadata store is the record). Raises the control plane's error if etcd cannot be reached; the changes
        stay pending and go with the next publish."""
        if not self.control.clustered:
            return
        async with self._publish_lock:
            for document, read in ((LINKS_DOCUMENT, self.metadata.shadow_link),
                                   (TOPICS_DOCUMENT, self.metadata.shadow_topic)):
                pending = self._pending[document]
                if not pending:
                    continue
                taken = dict(pending)
                values = {key: read(key) for key in taken}

                def change(current: Any, values: dict[str, Entry | None] = values) -> Any:
                    merged = dict(current or {})
                    for key, value in values.items():
                        if value is None:
                            merged.pop(key, None)
                        else:
                            merged[key] = value
                    return merged

                await self.control.update_document(document, change)
                for key, count in taken.items():
                    if pending.get(key) == count:
                        del pending[key]

    def _take(self, document: str, doc: Any) -> None:
        """A version of a cluster document, read from etcd: it replaces this copy, except for keys changed here
        and not yet published."""
        if not isinstance(doc, dict):
            log.warning("ignoring an unreadable %s document", document)
            return
        pending = self._pending[document]
        current = self.links() if document == LINKS_DOCUMENT else self.topics()
        wanted = {k: v for k, v in doc.items() if isinstance(v, dict) and k not in pending}
        wanted.update({k: current[k] for k in pending if k in current})
        if wanted == current:
            return
        with self.metadata.batch():
            for key in set(current) - set(wanted):
                (self.metadata.delete_shadow_link if document == LINKS_DOCUMENT
                 else self.metadata.delete_shadow_topic)(key)
            for key, value in wanted.items():
                if current.get(key) != value:
                    (self.metadata.put_shadow_link if document == LINKS_DOCUMENT
                     else self.metadata.put_shadow_topic)(key, value)
