"""The API versions this client can build requests for and read responses of, and their negotiation.

At connect time the client picks, per API, the highest version that both this table and the remote
broker's ApiVersions answer allow. An API outside the table is never sent, and no request assumes the
remote is umbra: every one is built for the version negotiated with the broker it goes to.

The lowest versions are those of Apache Kafka 0.11.0, the first release with v2 record batches (which
a shadow stores verbatim): Fetch v4, ListOffsets v1, Metadata v1, OffsetFetch v1, FindCoordinator v0,
ListGroups v0, DescribeConfigs v1, DescribeAcls v1 and ApiVersions v0. Older brokers keep records in
message format v0/v1 and cannot be a source. ``docs/compatibility.md`` lists what each source version
degrades.
"""

from __future__ import annotations

import struct

from umbra.protocol.varint import VarintError, read_uvarint, skip_tagged_fields

API_VERSIONS = 18
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
LIST_GROUPS = 16
DESCRIBE_ACLS = 29
DESCRIBE_CONFIGS = 32
OFFSET_FOR_LEADER_EPOCH = 23
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36

API_NAMES = {API_VERSIONS: "ApiVersions", FETCH: "Fetch", LIST_OFFSETS: "ListOffsets", METADATA: "Metadata",
             OFFSET_FETCH: "OffsetFetch", FIND_COORDINATOR: "FindCoordinator", LIST_GROUPS: "ListGroups",
             DESCRIBE_ACLS: "DescribeAcls", DESCRIBE_CONFIGS: "DescribeConfigs",
             OFFSET_FOR_LEADER_EPOCH: "OffsetForLeaderEpoch", SASL_HANDSHAKE: "SaslHandshake",
             SASL_AUTHENTICATE: "SaslAuthenticate"}

# api_key -> (lowest, highest) version we can use.
USABLE_VERSIONS: dict[int, tuple[int, int]] = {
    FETCH: (4, 16),  # v5+ log start offset, v7+ sessions, v9+ leader epochs, v12+ flexible, v13+ topic ids
    LIST_OFFSETS: (1, 10),  # v4+ current leader epoch
    METADATA: (1, 12),  # v7+ leader epochs, v10+ topic ids
    OFFSET_FETCH: (1, 9),  # v8+ batches groups
    FIND_COORDINATOR: (0, 4),  # v4+ batches keys
    LIST_GROUPS: (0, 4),
    API_VERSIONS: (0, 3),
    DESCRIBE_ACLS: (1, 3),
    DESCRIBE_CONFIGS: (1, 4),
    OFFSET_FOR_LEADER_EPOCH: (2, 4),  # v2+ names the current leader epoch (Kafka 2.1)
    SASL_HANDSHAKE: (1, 1),  # v1: the tokens travel in SaslAuthenticate (Kafka 1.0, KIP-152)
    SASL_AUTHENTICATE: (0, 2),
}

# The versions from which a feature exists on the wire.
FETCH_LOG_START_OFFSET = 5
FETCH_SESSIONS = 7
FETCH_LEADER_EPOCH = 9  # current_leader_epoch: FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH (KIP-320)
FETCH_DIVERGING_EPOCH = 12  # last_fetched_epoch in, diverging_epoch out (KIP-595)
FETCH_TOPIC_IDS = 13
METADATA_LEADER_EPOCH = 7
METADATA_TOPIC_IDS = 10
LIST_OFFSETS_LEADER_EPOCH = 4

_ENTRY = struct.Struct(">hhh")
_ERROR = struct.Struct(">h")
_COUNT = struct.Struct(">i")


def negotiate(remote: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Per API key, the highest version both sides support; APIs with no common version are left out."""
    chosen = {}
    for api_key, (our_min, our_max) in USABLE_VERSIONS.items():
        if api_key not in remote:
            continue
        their_min, their_max = remote[api_key]
        version = min(our_max, their_max)
        if version >= max(our_min, their_min):
            chosen[api_key] = version
    return chosen


def api_versions_error(body: bytes | memoryview) -> int:
    """The error code of an ApiVersions response body: its first field in every version."""
    if len(body) < 2:
        raise ValueError(f"ApiVersions response of {len(body)} bytes has no error code")
    return int(_ERROR.unpack_from(body, 0)[0])


def named_api_versions_max(body: bytes | memoryview) -> int | None:
    """The highest ApiVersions version that an UNSUPPORTED_VERSION answer names, read leniently (KIP-511).

    A broker that does not know the version asked for answers in a layout the client cannot be sure of:
    v0 (Kafka 2.4 and later, listing just ApiVersions), v0 with no entries (older Kafka), or something
    else again (librdkafka's mock cluster writes a one-byte entry count). Each layout is tried; None
    means no layout names ApiVersions, and the caller falls back to v0, which every broker speaks.
    """
    for entries in (_entries_v0, _entries_flexible, _entries_byte_count):
        try:
            found = entries(body)
        except (struct.error, VarintError, ValueError, IndexError):
            continue
        for api_key, _lowest, highest in found:
            if api_key == API_VERSIONS and highest >= 0:
                return highest
    return None


def _entries_v0(body: bytes | memoryview) -> list[tuple[int, int, int]]:
    (count,) = _COUNT.unpack_from(body, 2)
    if not 0 <= count or 6 + count * _ENTRY.size > len(body):
        raise ValueError("not a v0 entry list")
    return [_ENTRY.unpack_from(body, 6 + i * _ENTRY.size) for i in range(count)]


def _entries_flexible(body: bytes | memoryview) -> list[tuple[int, int, int]]:
    count, pos = read_uvarint(body, 2)
    entries = []
    for _ in range(count - 1):
        entries.append(_ENTRY.unpack_from(body, pos))
        pos = skip_tagged_fields(body, pos + _ENTRY.size)
    return entries


def _entries_byte_count(body: bytes | memoryview) -> list[tuple[int, int, int]]:
    count = body[2]
    if 3 + count * _ENTRY.size > len(body):
        raise ValueError("not a one-byte-count entry list")
    return [_ENTRY.unpack_from(body, 3 + i * _ENTRY.size) for i in range(count)]
