"""Small text checkpoint files written atomically (temp file, fsync, rename, fsync directory)."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` (write a temporary file, rename). ``durable`` also fsyncs the file and
    its directory, so the new content survives a machine crash, not only a process crash."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        data = text.encode("utf-8")
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if durable:
        fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[str] | None:
    """Lines of a checkpoint file, or None if it does not exist."""
    try:
        return path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return None


def read_offset(path: Path) -> int | None:
    """The offset in a ``0\n<offset>\n`` checkpoint (version 0), or None if missing or unreadable."""
    lines = read_lines(path)
    try:
        return int(lines[1]) if lines and lines[0] == "0" else None
    except (IndexError, ValueError):
        return None


def write_offset(path: Path, offset: int) -> None:
    write_atomically(path, f"0\n{offset}\n")
