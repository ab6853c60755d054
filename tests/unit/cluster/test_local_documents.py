"""A single broker's cluster documents (files in its data directory) and the lock a running broker holds on it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from umbra.cluster.control import (
    BrokerInfo,
    ControlPlaneError,
    DataDirLock,
    LocalControlPlane,
    local_document_path,
    read_local_document,
    write_local_document,
)

ME = BrokerInfo(1, None, "127.0.0.1:9092", "http://127.0.0.1:9644")


def test_documents_are_files_read_when_built_and_written_before_they_are_seen(tmp_path: Path) -> None:
    write_local_document(tmp_path, "scram_users", {"version": 1, "users": {}})
    seen: list[Any] = []
    plane = LocalControlPlane("c", 1, tmp_path)
    plane.subscribe_document("scram_users", seen.append)
    assert plane.document("scram_users") == {"version": 1, "users": {}}  # before start, too

    async def scenario() -> Any:
        await plane.start(ME)
        stored = await plane.update_document("scram_users", lambda doc: {**doc, "users": {"x": 1}})
        await plane.stop()
        return stored

    stored = asyncio.run(scenario())
    assert stored == {"version": 1, "users": {"x": 1}} == plane.document("scram_users")
    assert seen == [{"version": 1, "users": {}}, stored]  # at start, then on the change
    assert json.loads(local_document_path(tmp_path, "scram_users").read_text()) == stored
    again = LocalControlPlane("c", 1, tmp_path)
    assert again.document("scram_users") == stored and again.document("missing") is None
    asyncio.run(again.stop())


def test_a_change_gets_a_copy_it_may_mutate(tmp_path: Path) -> None:
    plane = LocalControlPlane("c", 1, tmp_path)

    def mutate(document: Any) -> Any:
        document = document or {"n": []}
        document["n"].append(1)
        return document

    asyncio.run(plane.update_document("d", mutate))
    first = plane.document("d")
    asyncio.run(plane.update_document("d", mutate))
    assert first == {"n": [1]} and plane.document("d") == {"n": [1, 1]}


def test_without_a_data_dir_documents_stay_in_memory() -> None:
    plane = LocalControlPlane("c", 1)
    assert asyncio.run(plane.update_document("d", lambda _: [1])) == [1]
    assert plane.document("d") == [1]


def test_an_unreadable_document_stops_the_broker_with_its_path(tmp_path: Path) -> None:
    local_document_path(tmp_path, "scram_users").parent.mkdir()
    local_document_path(tmp_path, "scram_users").write_text("{not json")
    with pytest.raises(ControlPlaneError, match="scram_users.json cannot be read"):
        LocalControlPlane("c", 1, tmp_path)  # the broker does not start
    with pytest.raises(ValueError, match="not a document name"):
        read_local_document(tmp_path, "../acls")


def test_a_broker_holds_the_data_dir_from_construction_to_stop(tmp_path: Path) -> None:
    plane = LocalControlPlane("c", 1, tmp_path)
    with pytest.raises(ControlPlaneError, match="in use by a running broker.*stop it"):
        DataDirLock.acquire(tmp_path, "stop it")
    with pytest.raises(ControlPlaneError, match="two brokers cannot share a data directory"):
        LocalControlPlane("c", 2, tmp_path)
    asyncio.run(plane.stop())
    DataDirLock.acquire(tmp_path, "free now").release()


def test_an_unreadable_document_leaves_the_data_dir_free(tmp_path: Path) -> None:
    local_document_path(tmp_path, "scram_users").parent.mkdir()
    local_document_path(tmp_path, "scram_users").write_text("[")
    with pytest.raises(ControlPlaneError, match="cannot be read"):
        LocalControlPlane("c", 1, tmp_path)
    DataDirLock.acquire(tmp_path, "free").release()
