"""Status says what it does not know: a lag is null, not 0, while the source's high watermark is unknown."""

from __future__ import annotations

from harness import BrokerProcess, create_topic
from link_api import admin_call, create_link, link_spec, link_status
from shadow_helpers import produce, wait_in_sync, wait_link_state

TOPIC = "honest"


def test_lag_is_unknown_until_the_source_says(clusters: tuple[BrokerProcess, BrokerProcess]) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, TOPIC, partitions=2)
    produce(source.bootstrap, TOPIC, [{"value": b"v%d" % i, "partition": i % 2} for i in range(100)])
    create_link(shadow, link_spec(source, prefixes=(TOPIC,)))
    wait_in_sync(source, shadow, {TOPIC: 2})

    # Paused and restarted, the shadow has not heard from the source since it started.
    assert admin_call(shadow, "POST", "/v1/shadow-links/dr/pause")[0] == 200
    produce(source.bootstrap, TOPIC, [{"value": b"more", "partition": 0}] * 10)
    shadow.restart()
    doc = link_status(shadow)
    parts = [p for p in doc["partitions"] if p["topic"] == TOPIC]
    assert parts and all(p["source_high_watermark"] == -1 and p["lag"] is None for p in parts), parts
    assert doc["total_lag"] == 0 and doc["total_lag_complete"] is False, doc
    result = admin_call(shadow, "GET", "/v1/shadow-links/dr/status")[1]
    assert result["total_lag_complete"] is False

    # Resumed: the source answers, and the lag is a number again (the 10 new records, then 0).
    assert admin_call(shadow, "POST", "/v1/shadow-links/dr/resume")[0] == 200
    wait_in_sync(source, shadow, {TOPIC: 2})
    doc = wait_link_state(shadow, lambda d: d if d["total_lag_complete"] else None, "lag known")
    assert all(p["lag"] == 0 for p in doc["partitions"] if p["topic"] == TOPIC), doc["partitions"]
