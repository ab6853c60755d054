"""umbra.client: a small asyncio Kafka client for the broker's own outbound use (shadow links).

It fetches raw record batches through per-broker fetch sessions and never decodes records.
"""

from umbra.client.admin import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    AclBinding,
    AclFilter,
    CommittedOffset,
    ConfigEntry,
    ConfigSource,
    GroupListing,
    ListedOffset,
)
from umbra.client.cluster import SourceCluster
from umbra.client.connection import BrokerConnection
from umbra.client.errors import (
    ClientConnectionError,
    ClientError,
    ClientProtocolError,
    ClientResponseError,
    ClientTimeout,
    UnsupportedApiError,
)
from umbra.client.fetch_response import FetchedPartition, decode_fetch_response
from umbra.client.fetcher import BrokerFetcher, FetchResult
from umbra.client.metadata import ClusterMetadata, PartitionInfo, TopicInfo
from umbra.client.settings import ConnectionSettings, FetchSettings, SaslSettings, TlsSettings

__all__ = [
    "EARLIEST_TIMESTAMP", "LATEST_TIMESTAMP", "AclBinding", "AclFilter", "BrokerConnection", "BrokerFetcher",
    "ClientConnectionError", "ClientError", "ClientProtocolError", "ClientResponseError", "ClientTimeout",
    "ClusterMetadata", "CommittedOffset", "ConfigEntry", "ConfigSource", "ConnectionSettings", "FetchResult",
    "FetchSettings", "FetchedPartition", "GroupListing", "ListedOffset", "PartitionInfo", "SaslSettings",
    "SourceCluster", "TlsSettings", "TopicInfo", "UnsupportedApiError", "decode_fetch_response",
]
