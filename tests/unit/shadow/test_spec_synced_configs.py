"""Which topic configs a link syncs by default: every Kafka topic config but those the shadow owns."""

from __future__ import annotations

from typing import Any

from umbra.cluster.configs import TOPIC_CONFIGS
from umbra.shadow.spec import DEFAULT_SYNCED_PROPERTIES, SHADOW_OWNED_PROPERTIES, parse_link_spec


def link_doc(**topics: Any) -> dict[str, Any]:
    return {"name": "dr", "source": {"bootstrap_servers": ["a:9092"]},
            "topics": {"filters": [{"include": "literal", "name": "orders"}], **topics}}


def test_the_default_syncs_every_topic_config_the_shadow_does_not_own() -> None:
    synced = parse_link_spec(link_doc()).topics.synced_properties
    assert synced == DEFAULT_SYNCED_PROPERTIES
    assert set(synced) == set(TOPIC_CONFIGS) - SHADOW_OWNED_PROPERTIES
    assert SHADOW_OWNED_PROPERTIES <= set(TOPIC_CONFIGS)  # no typo in the owned list
    # stored without effect, synced all the same; the shadow's own storage and replication are not
    assert {"file.delete.delay.ms", "message.format.version", "retention.ms", "cleanup.policy"} <= set(synced)
    assert not {"segment.bytes", "min.insync.replicas", "remote.storage.enable"} & set(synced)


def test_a_stored_spec_keeps_its_list_and_the_former_default_becomes_todays() -> None:
    chosen = parse_link_spec(link_doc(synced_properties=["retention.ms", "cleanup.policy"]))
    assert parse_link_spec(chosen.to_json()).topics.synced_properties == ("retention.ms", "cleanup.policy")
    former = ["retention.ms", "retention.bytes", "cleanup.policy", "max.message.bytes", "message.timestamp.type",
              "compression.type", "delete.retention.ms", "min.compaction.lag.ms", "max.compaction.lag.ms",
              "min.cleanable.dirty.ratio"]
    assert parse_link_spec(link_doc(synced_properties=former)).topics.synced_properties == DEFAULT_SYNCED_PROPERTIES
