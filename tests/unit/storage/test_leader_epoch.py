"""The leader-epoch checkpoint: rewritten in place while it grows (no inode churn), renamed otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from umbra.storage.leader_epoch import FILE_NAME, LeaderEpochCache


def test_growing_checkpoint_is_rewritten_in_place_and_reloads(tmp_path: Path) -> None:
    cache = LeaderEpochCache(tmp_path)
    cache.assign(0, 0)
    cache.persist()
    inode = os.stat(tmp_path / FILE_NAME).st_ino
    for epoch in range(1, 12):  # the count line grows from 1 to 2 digits on the way
        assert cache.assign(epoch, epoch * 100)
        cache.persist()
        assert os.stat(tmp_path / FILE_NAME).st_ino == inode
    reloaded = LeaderEpochCache(tmp_path)
    assert reloaded.loaded and reloaded.entries == cache.entries
    assert not list(tmp_path.glob("*.tmp"))


def test_shrinking_checkpoint_is_replaced_whole(tmp_path: Path) -> None:
    cache = LeaderEpochCache(tmp_path)
    for epoch in range(5):
        cache.assign(epoch, epoch * 10)
    cache.persist()
    reloaded = LeaderEpochCache(tmp_path)
    assert reloaded.truncate_from_end(25)
    reloaded.persist()
    assert (tmp_path / FILE_NAME).read_text() == "0\n3\n0 0\n1 10\n2 20\n"
    assert LeaderEpochCache(tmp_path).entries == [(0, 0), (1, 10), (2, 20)]
    reloaded.assign(7, 30)
    reloaded.persist()
    assert LeaderEpochCache(tmp_path).entries == [(0, 0), (1, 10), (2, 20), (7, 30)]
