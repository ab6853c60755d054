"""Partition logs: segments, sparse indexes, producer state, recovery, retention."""

from umbra.storage.config import LogConfig
from umbra.storage.log import AppendResult, Log, LogEndOffsetMismatch
from umbra.storage.manager import LogManager

__all__ = ["AppendResult", "Log", "LogConfig", "LogEndOffsetMismatch", "LogManager"]
