"""The data directory: one ``<topic>-<partition>/`` directory per partition log."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from umbra.errors import KafkaStorageError
from umbra.storage.config import LogConfig
from umbra.storage.log import Log

logger = logging.getLogger(__name__)

DELETED_DIR_SUFFIX = ".deleted"


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """``my-topic-3`` -> ("my-topic", 3); topics may contain '-', so split on the last one."""
    topic, sep, number = name.rpartition("-")
    if not sep or not topic or not number.isdigit():
        return None
    return topic, int(number)


class LogManager:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._logs: dict[tuple[str, int], Log] = {}
        self._lock = threading.Lock()
        data_dir.mkdir(parents=True, exist_ok=True)

    def open_all(self, config_for: Callable[[str], LogConfig]) -> list[Log]:
        """Open every partition directory (start-up); finish deletions a crash interrupted."""
        opened: list[Log] = []
        for path in sorted(self.data_dir.iterdir()):
            if not path.is_dir():
                continue
            if path.name.endswith(DELETED_DIR_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)
                continue
            parsed = parse_partition_dir(path.name)
            if parsed is None:
                continue
            topic, partition = parsed
            log = Log.open(path, topic, partition, config_for(topic))
            with self._lock:
                self._logs[parsed] = log
            opened.append(log)
        return opened

    def get(self, topic: str, partition: int) -> Log | None:
        return self._logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig) -> Log:
        """Open (creating if needed) the log of a partition; returns the existing one if already open."""
        with self._lock:
            existing = self._logs.get((topic, partition))
            if existing is not None:
                return existing
            log = Log.open(self.data_dir / partition_dir_name(topic, partition), topic, partition, config)
            self._logs[(topic, partition)] = log
            return log

    def detach_partition(self, topic: str, partition: int) -> Path | None:
        """Forget a deleted partition's log (closed without a flush: its data is going) and rename its directory
        ``.deleted``, so the name is free for a new topic at once; returns the renamed directory, whose removal
        (:func:`remove_directories`, slow for big logs) belongs on a worker thread."""
        with self._lock:
            log = self._logs.pop((topic, partition), None)
        if log is not None:
            log.close(flush=False)
        path = self.data_dir / partition_dir_name(topic, partition)
        if not path.exists():
            return None
        doomed = path.with_name(path.name + DELETED_DIR_SUFFIX)
        if doomed.exists():
            shutil.rmtree(doomed, ignore_errors=True)
        path.rename(doomed)
        return doomed

    def delete_partition(self, topic: str, partition: int) -> bool:
        """Close and remove a partition's log; the directory is renamed ``.deleted`` first so a crash mid-removal
        is finished at the next start. Returns whether anything was deleted."""
        with self._lock:
            log = self._logs.pop((topic, partition), None)
        if log is not None:
            log.close()
        path = self.data_dir / partition_dir_name(topic, partition)
        if not path.exists():
            return log is not None
        doomed = path.with_name(path.name + DELETED_DIR_SUFFIX)
        if doomed.exists():
            shutil.rmtree(doomed, ignore_errors=True)
        path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def all_logs(self) -> list[Log]:
        with self._lock:
            return list(self._logs.values())

    def flush_all(self) -> None:
        for log in self.all_logs():
            try:
                log.flush()
            except KafkaStorageError:
                pass  # that partition went offline, and said so; the others are flushed

    def close_all(self) -> None:
        with self._lock:
            logs = list(self._logs.values())
            self._logs.clear()
        for log in logs:
            log.close()

    def enforce_retention_all(self, now_ms: int) -> int:
        total = 0
        for log in self.all_logs():
            try:
                total += log.enforce_retention(now_ms)
            except OSError:
                logger.exception("retention failed for %s", log.name)
        return total

    def maybe_flush_all(self, now_ms: int) -> None:
        for log in self.all_logs():
            log.maybe_flush(now_ms)


def remove_directories(paths: list[Path]) -> None:
    """Remove directories that ``detach_partition`` renamed (a crash meanwhile: removed at the next start)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
