"""`make demo`: umbra's story in a couple of minutes: a shadow link, live replication, failover, and a
consumer group that carries on at the shadow at the offsets it committed at the source.

1. Start two single-broker clusters on embedded defaults (free loopback ports, temporary directories):
   a *source* and a *shadow*.
2. Create a shadow link on the shadow cluster with ``umbra shadow create``.
3. A producer writes to the source while the link's live status shows the lag.
4. A consumer group reads part of the topic on the source and commits; the link copies its offsets.
5. Fail over with ``umbra shadow failover --all --wait``.
6. The same consumer group resumes on the shadow at its committed offsets and reads the rest: every record
   exactly once across the two clusters. New writes on the shadow continue at the next offset.

Clients are kafka-python (umbra's own protocol codec, so nothing beyond umbra's dependencies is needed).
Both brokers are stopped by pid at the end, also on failure. Exit status 0 means every check passed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

TOPIC = "orders"
PARTITIONS = 3
RECORDS = 60_000
PRODUCE_SECONDS = 3.0
GROUP = "billing"
LINK = "dr"
T = TypeVar("T")


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


# --- output ------------------------------------------------------------------------------------------

_step = 0


def step(title: str) -> None:
    global _step
    _step += 1
    print(f"\n== {_step}. {title}", flush=True)


def say(text: str) -> None:
    print(f"   {text}", flush=True)


# --- waiting ------------------------------------------------------------------------------------------


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; DemoError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, urllib.error.URLError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# --- brokers -----------------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Broker:
    """One `umbra broker` process on embedded defaults, except for its ports and data directory."""

    def __init__(self, name: str, node_id: int, work_dir: Path) -> None:
        self.name = name
        self.node_id = node_id
        self.work_dir = work_dir
        self.port, self.admin_port = _free_ports(2)
        self.log_path = work_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "umbra", "broker", "--data-dir", str(self.work_dir / "data"),
                   "--node-id", str(self.node_id), "--listen", self.bootstrap,
                   "--admin-listen", f"127.0.0.1:{self.admin_port}"]
        print("   $ umbra " + " ".join(command[3:]), flush=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise DemoError(f"the {self.name} broker exited with code {self.process.returncode} during start-up:\n"
                                f"{self.log_tail()}")
            with urllib.request.urlopen(f"{self.admin_url}/v1/health", timeout=1) as response:
                return bool(response.status == 200)

        wait_for(f"the {self.name} broker to answer {self.admin_url}/v1/health", ready, timeout=30)
        say(f"{self.name} broker ready: Kafka {self.bootstrap}, admin {self.admin_url}, pid {self.process.pid}")

    def stop(self) -> int | None:
        """SIGTERM by pid, then SIGKILL if it has not exited within 20 s. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.admin_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")


# --- the CLI, as an operator runs it --------------------------------------------------------------------


def umbra_shadow(shadow: Broker, *args: str) -> None:
    """Run `umbra shadow --admin-url URL ARGS` in this process, print its output, fail the demo if it fails."""
    from umbra.cli.main import main as umbra_main

    print(f"   $ umbra shadow --admin-url {shadow.admin_url} {' '.join(args)}", flush=True)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = umbra_main(["shadow", "--admin-url", shadow.admin_url, *args])
    for line in output.getvalue().rstrip("\n").split("\n"):
        say("  " + line.split("\r")[-1])  # a progress line rewritten in place with \r: its final state
    if code != 0:
        raise DemoError(f"`umbra shadow {' '.join(args)}` exited with status {code}")


# --- Kafka clients (kafka-python) ------------------------------------------------------------------------


def value_of(i: int) -> bytes:
    return f"order {i:05d}: amount={(i * 37) % 1000}.{i % 100:02d}".encode()


def produce_live(bootstrap: str, records: int, seconds: float, done: threading.Event,
                 errors: list[BaseException]) -> None:
    """Write ``records`` records at a steady pace over about ``seconds`` (acks=all), then set ``done``."""
    from kafka import KafkaProducer

    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type="lz4")
        started = time.monotonic()
        chunk = max(1, records // 50)
        for i in range(records):
            producer.send(TOPIC, key=f"customer-{i % 97}".encode(), value=value_of(i), partition=i % PARTITIONS)
            if i % chunk == chunk - 1:
                pause = started + seconds * (i + 1) / records - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing, so the replication can be watched live
        producer.flush(timeout=30)
        producer.close(timeout=10)
    except BaseException as exc:
        errors.append(exc)
    finally:
        done.set()


def committed_offsets(bootstrap: str) -> dict[int, int]:
    """The group's committed offsets per partition of the topic (OffsetFetch, without joining the group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    try:
        result = {}
        for p in range(PARTITIONS):
            offset = consumer.committed(TopicPartition(TOPIC, p))
            result[p] = -1 if offset is None else offset
        return result
    finally:
        consumer.close()


@contextlib.contextmanager
def group_consumer(bootstrap: str) -> Iterator[Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=500, max_partition_fetch_bytes=32768)
    try:
        yield consumer
    finally:
        consumer.close()


def consume(consumer: Any, per_partition: dict[int, int], timeout: float) -> list[Any]:
    """Poll until every partition p gave at least ``per_partition[p]`` records, pausing the ones that have.

    Every record a poll returned is kept (and so counts as processed when the caller commits).
    """
    records: list[Any] = []
    counts = dict.fromkeys(per_partition, 0)

    def enough() -> bool:
        for tp, batch in consumer.poll(timeout_ms=500).items():
            records.extend(batch)
            counts[tp.partition] += len(batch)
            if counts[tp.partition] >= per_partition[tp.partition]:
                consumer.pause(tp)
        return all(counts[p] >= wanted for p, wanted in per_partition.items())

    wait_for(f"{sum(per_partition.values()):,} records for group {GROUP}", enough, timeout=timeout, interval=0)
    return records


# --- the story ------------------------------------------------------------------------------------------------


def spec_yaml(source: Broker) -> str:
    return (f"name: {LINK}\n"
            f"source:\n"
            f'  bootstrap_servers: ["{source.bootstrap}"]\n'
            f"topics:\n"
            f"  sync_interval: 1s\n"
            f"  filters:\n"
            f'    - {{include: prefix, name: "{TOPIC}"}}\n'
            f'    - {{exclude: literal, name: "{TOPIC}-tmp"}}\n'
            f"  start_at: earliest\n"
            f"consumer_offsets: {{enabled: true, interval: 1s, groups: [{{include: prefix, name: \"\"}}]}}\n"
            f"acls: {{enabled: true, interval: 30s}}\n")


def status_line(doc: dict[str, Any], elapsed: float) -> str:
    parts = [p for p in doc["partitions"] if p["topic"] == TOPIC]
    source_hw = sum(max(p["source_high_watermark"], 0) for p in parts)
    shadow_hw = sum(max(p["shadow_high_watermark"], 0) for p in parts)
    lag = sum(p["lag"] or 0 for p in parts)
    return (f"t={elapsed:4.1f}s  source high watermark {source_hw:>6,}  shadow high watermark {shadow_hw:>6,}  "
            f"lag {lag:>5,} records")


def caught_up(shadow: Broker, source_end: dict[int, int]) -> dict[str, Any] | None:
    doc: dict[str, Any] = shadow.api("GET", f"/v1/shadow-links/{LINK}/status")
    parts = {p["partition"]: p for p in doc["partitions"] if p["topic"] == TOPIC}
    if all(p in parts and parts[p]["lag"] == 0 and parts[p]["shadow_high_watermark"] == end
           for p, end in source_end.items()):
        return doc
    return None


def run(work_dir: Path, brokers: list[Broker]) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    step("Start two clusters: a source and a shadow (single brokers, embedded defaults)")
    source = Broker("source", 1, work_dir / "source")
    shadow = Broker("shadow", 2, work_dir / "shadow")
    for broker in (source, shadow):
        broker.work_dir.mkdir(parents=True)
        brokers.append(broker)
        broker.start()
    admin = KafkaAdminClient(bootstrap_servers=source.bootstrap)
    admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()
    say(f"created topic {TOPIC!r} ({PARTITIONS} partitions) on the source")

    step("Create a shadow link on the shadow cluster")
    spec_path = work_dir / "dr.yaml"
    spec_path.write_text(spec_yaml(source))
    say(f"the link spec, {spec_path.name}:")
    for line in spec_path.read_text().splitlines():
        say(f"    {line}")
    umbra_shadow(shadow, "create", "--config", str(spec_path))

    step(f"A producer writes {RECORDS:,} records to the source; the link replicates them live")
    done = threading.Event()
    errors: list[BaseException] = []
    producer = threading.Thread(target=produce_live, args=(source.bootstrap, RECORDS, PRODUCE_SECONDS, done, errors),
                                daemon=True)
    say("the link's status every half second (lag = the source's high watermark minus the shadow's, in records)")
    started = time.monotonic()
    producer.start()
    while not done.wait(0.5):  # a status line every half second while the producer runs
        say(status_line(shadow.api("GET", f"/v1/shadow-links/{LINK}/status"), time.monotonic() - started))
    producer.join()
    if errors:
        raise DemoError(f"the producer failed: {errors[0]!r}")
    stopped = time.monotonic()
    source_end = {p: RECORDS // PARTITIONS + (1 if p < RECORDS % PARTITIONS else 0) for p in range(PARTITIONS)}
    doc = wait_for("the link to catch up", lambda: caught_up(shadow, source_end), timeout=60)
    say(status_line(doc, time.monotonic() - started))
    say(f"the producer stopped; the lag was 0 {1000 * (time.monotonic() - stopped):.0f} ms later")
    umbra_shadow(shadow, "status", LINK)

    step(f"Consumer group {GROUP!r} reads about half of the topic on the source and commits")
    with group_consumer(source.bootstrap) as consumer:
        before = consume(consumer, {p: end // 2 for p, end in source_end.items()}, timeout=60)
        consumer.commit()
    on_source = committed_offsets(source.bootstrap)
    say(f"read {len(before):,} records on the source; committed offsets {on_source}")

    def copied() -> dict[int, int] | None:
        offsets = committed_offsets(shadow.bootstrap)
        return offsets if offsets == on_source else None

    on_shadow = wait_for("the link to copy the group's offsets to the shadow", copied, timeout=60, interval=0.3)
    say(f"the link copied them to the shadow: {on_shadow}")

    step("Disaster: fail over to the shadow")
    umbra_shadow(shadow, "failover", LINK, "--all", "--wait")
    states = {t["topic"]: t["state"] for t in shadow.api("GET", f"/v1/shadow-links/{LINK}/status")["topics"]}
    if states.get(TOPIC) != "FAILED_OVER":
        raise DemoError(f"{TOPIC} is {states.get(TOPIC)} after failover, not FAILED_OVER")

    step(f"Consumer group {GROUP!r} resumes on the shadow at its committed offsets")
    with group_consumer(shadow.bootstrap) as consumer:
        after = consume(consumer, {p: end - on_shadow[p] for p, end in source_end.items()}, timeout=60)
        first = {p: min((r.offset for r in after if r.partition == p), default=source_end[p])
                 for p in range(PARTITIONS)}
        say(f"committed on the shadow: {on_shadow}")
        say(f"first offsets read:      {first}")
        if first != on_shadow:
            raise DemoError(f"the group did not resume at its committed offsets: {first} != {on_shadow}")
        consumer.commit()
    say(f"read the remaining {len(after):,} records on the shadow")
    seen = [r.value for r in before] + [r.value for r in after]
    expected = {value_of(i) for i in range(RECORDS)}
    if len(seen) != RECORDS or set(seen) != expected:
        raise DemoError(f"records across source and shadow: {len(seen)} read, {len(set(seen))} distinct, "
                        f"{len(expected - set(seen))} missing (expected each of {RECORDS} once)")
    say(f"every one of the {RECORDS:,} records was read exactly once across source and shadow: no gap, no repeat")

    producer_ = KafkaProducer(bootstrap_servers=shadow.bootstrap, acks="all")
    metadata = producer_.send(TOPIC, key=b"after-failover", value=b"a new order", partition=0).get(timeout=30)
    producer_.close()
    say(f"a new record written to the shadow got offset {metadata.offset} in {TOPIC}-0 "
        f"(the source's log ended at {source_end[0]}): the topic is an ordinary writable topic now")
    if metadata.offset != source_end[0]:
        raise DemoError(f"the new record got offset {metadata.offset}, expected {source_end[0]}")


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)  # kafka-python's connection chatter is not the story
    print("umbra demo: shadow links (broker-internal replication at the source's offsets) and failover")
    brokers: list[Broker] = []
    failure: str | None = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="umbra-demo-") as temp:
        try:
            run(Path(temp), brokers)
        except DemoError as exc:
            failure = str(exc)
        except KeyboardInterrupt:
            failure = "interrupted"
        except Exception as exc:  # any other failure is a failed demo too, with its cause
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            if failure is not None:
                for broker in brokers:
                    print(f"--- last lines of the {broker.name} broker's log ---\n{broker.log_tail()}", file=sys.stderr)
            step("Stop both brokers")
            for broker in brokers:
                code = broker.stop()
                say(f"{broker.name} broker (pid {broker.process.pid if broker.process else '-'}) stopped, "
                    f"exit code {code}")
    if failure is not None:
        print(f"\numbra demo: FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"\numbra demo: done in {time.monotonic() - started:.0f}s, every check passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
