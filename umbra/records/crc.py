"""CRC32C (Castagnoli) through the ``crc32c`` C extension.

There is deliberately no pure-Python fallback: it would be ~2,000x slower and turn a
missing wheel into a silent throughput collapse instead of an import error.
"""

from __future__ import annotations

from crc32c import crc32c as _crc32c

Buffer = bytes | bytearray | memoryview


def crc32c(data: Buffer) -> int:
    """Return the CRC32C of ``data`` as an unsigned 32-bit int (zero-copy for memoryviews)."""
    return int(_crc32c(data))
