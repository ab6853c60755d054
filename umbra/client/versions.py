"""The API versions this client knows how to build requests for and read responses of.

At connect time the client picks, per API, the highest version that both this table and the remote
broker's ApiVersions answer allow. An API outside the table is never sent.
"""

from __future__ import annotations

API_VERSIONS = 18
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
LIST_GROUPS = 16
DESCRIBE_ACLS = 29
DESCRIBE_CONFIGS = 32

# api_key -> (lowest, highest) version we can use.
USABLE_VERSIONS: dict[int, tuple[int, int]] = {
    FETCH: (4, 16),  # v12+ flexible, v13+ topic ids; our response decoder reads 4..18
    LIST_OFFSETS: (1, 10),
    METADATA: (1, 12),  # v10+ carries topic ids
    OFFSET_FETCH: (1, 9),  # v8+ batches groups
    FIND_COORDINATOR: (0, 4),  # v4+ batches keys
    LIST_GROUPS: (0, 4),
    API_VERSIONS: (0, 3),
    DESCRIBE_ACLS: (1, 3),
    DESCRIBE_CONFIGS: (1, 4),
}


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
