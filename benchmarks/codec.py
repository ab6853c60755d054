"""Why kafka-python's schema codec: decode and encode speed against kio, on messages umbra handles.

    .venv/bin/python benchmarks/codec.py

Prints microseconds per message and the ratio kio / kafka-python for three shapes: a Fetch request
(decoded on every fetch), a Metadata response with 100 topics x 3 partitions (encoded on every
metadata refresh) and an OffsetCommit request. kio is a benchmark-only dependency (not pinned in
requirements); install it with `pip install kio==0.6.5` if it is missing.
"""

from __future__ import annotations

import datetime
import io
import timeit
import uuid

from umbra.protocol.codec import SCHEMAS, build_message


def _time(fn, number: int = 2000) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def main() -> int:
    try:
        from kio.schema.errors import ErrorCode
        from kio.schema.fetch.v12.request import FetchRequest
        from kio.schema.metadata.v12.response import (
            MetadataResponse,
            MetadataResponseBroker,
            MetadataResponsePartition,
            MetadataResponseTopic,
        )
        from kio.serial import entity_reader, entity_writer
        from kio.static.primitive import i32
    except ImportError:
        print("kio is not installed: pip install kio==0.6.5")
        return 1

    # --- Fetch request v12, 10 partitions: decode
    fetch_fields = {"replica_id": -1, "max_wait_ms": 500, "min_bytes": 1, "max_bytes": 52428800,
                    "isolation_level": 0, "session_id": 0, "session_epoch": -1, "rack_id": "",
                    "forgotten_topics_data": [],
                    "topics": [{"topic": "orders", "partitions": [
                        {"partition": p, "current_leader_epoch": 0, "fetch_offset": 1000 * p, "last_fetched_epoch": -1,
                         "log_start_offset": -1, "partition_max_bytes": 1048576} for p in range(10)]}]}
    fetch_bytes = bytes(build_message(SCHEMAS[1].request, 12, fetch_fields).encode(version=12))
    kp_fetch = _time(lambda: SCHEMAS[1].request.decode(fetch_bytes, version=12))
    read_fetch = entity_reader(FetchRequest)
    kio_fetch = _time(lambda: read_fetch(fetch_bytes, 0))

    # --- Metadata response v12, 100 topics x 3 partitions: encode
    meta_fields = {"throttle_time_ms": 0, "cluster_id": "c", "controller_id": 1,
                   "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": 9092, "rack": None}],
                   "topics": [{"error_code": 0, "name": f"topic-{t}", "topic_id": uuid.uuid4(), "is_internal": False,
                               "partitions": [{"error_code": 0, "partition_index": p, "leader_id": 1, "leader_epoch": 0,
                                               "replica_nodes": [1], "isr_nodes": [1], "offline_replicas": []}
                                              for p in range(3)]} for t in range(100)]}
    kp_meta = _time(lambda: build_message(SCHEMAS[3].response, 12, meta_fields).encode(version=12), 300)
    kio_message = MetadataResponse(
        throttle_time=datetime.timedelta(0), cluster_id="c", controller_id=i32(1),  # type: ignore[arg-type]
        brokers=(MetadataResponseBroker(node_id=i32(1), host="127.0.0.1", port=i32(9092)),),  # type: ignore[arg-type]
        topics=tuple(MetadataResponseTopic(
            error_code=ErrorCode.none, name=f"topic-{t}", topic_id=uuid.uuid4(), is_internal=False,  # type: ignore[arg-type]
            partitions=tuple(MetadataResponsePartition(
                error_code=ErrorCode.none, partition_index=i32(p), leader_id=i32(1), leader_epoch=i32(0),  # type: ignore[arg-type]
                replica_nodes=(i32(1),), isr_nodes=(i32(1),), offline_replicas=()) for p in range(3)))
            for t in range(100)))
    write_meta = entity_writer(MetadataResponse)

    def kio_encode() -> None:
        buffer = io.BytesIO()
        write_meta(buffer, kio_message)

    kio_meta = _time(kio_encode, 300)
    print(f"{'message':<44} {'kafka-python':>14} {'kio':>10} {'kio/kafka-python':>18}")
    print(f"{'Fetch v12 request, 10 partitions (decode)':<44} {kp_fetch:>11.1f} us {kio_fetch:>7.1f} us "
          f"{kio_fetch / kp_fetch:>18.2f}")
    print(f"{'Metadata v12 response, 300 partitions (build+encode)':<44} {kp_meta:>11.1f} us {kio_meta:>7.1f} us "
          f"{kio_meta / kp_meta:>18.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
