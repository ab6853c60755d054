"""Shadow-link replication throughput, against a consume-and-produce pipeline and the raw loopback rate.

    .venv/bin/python benchmarks/replication.py              # 1 GiB of 100-byte and 1 GiB of 10-KiB records
    .venv/bin/python benchmarks/replication.py --mb 200     # a quicker run: 200 MiB of each

It starts `umbra broker` processes with tests/harness.py (free loopback ports, a temporary directory): a
source, and a fresh shadow or plain target broker for each measured run. It loads the source with
confluent-kafka producers (acks=all, compression none by default, `--compression lz4` to compress; values are
random bytes, so they would not compress anyway), one topic per record size: `--mb` MiB of 100-byte values, then `--mb` MiB of 10-KiB values.
Then, for each record size, it measures:

  (a) shadow link: create a link on the shadow for that topic (admin API) and time until the link's status
      shows, for every partition, lag 0 and a shadow high watermark equal to the source's;
  (b) consume -> produce pipeline, the MirrorMaker 2 shape: a confluent-kafka consumer on the source feeds
      a confluent-kafka producer (acks=all, idempotent, the same partition, key, value, headers and
      timestamp) writing to the target broker; timed from the first fetch until the last record is acked;
  (c) the machine's raw loopback copy rate: a file of the topic's log size sent with os.sendfile over a
      loopback TCP socket to a receiver thread that writes it to another file (best of 3).

Each case is run `--repeats` times (default 3) and the fastest run counts, as the raw copy has always been
a best of 3; every run's MB/s is printed beside it. (a) and (b) run on a fresh shadow or target broker each
time, whose files are deleted after the run. Before each run of (a) and (b), a scratch file of the log's
size is written and deleted, so that every case writes into recently freed page-cache pages, as (c)'s
repeats do: on this VM, new pages cost a host page fault each and
page-cache writes run 2-10x slower into them (benchmarks/copylimit.py; `--cold` skips the warm-up, and the
run starts by printing both write rates).

It prints records/s and MB/s for each, the ratios a/b and a/c, and the CPU the processes involved used.
MB = MiB of record values (keys, headers and batch overhead not counted); log MiB = bytes of the source's
log segments. All brokers are stopped at the end, also on error or Ctrl-C. This is not part of `make test`.

    .venv/bin/python benchmarks/replication.py --tls --mb 256 --repeats 2   # TLS against plaintext

`--tls` measures instead what TLS costs the link: the source gets a PLAINTEXT and an SSL listener (a throw-away
CA from tests/pki.py), and per record size, `--repeats` times, a fresh shadow catches up over PLAINTEXT and a
fresh one over SSL (the spec's `source.tls.ca_file`), back to back, which goes first alternating. It prints the
best of each with the source's and the shadow's CPU, and SSL/PLAINTEXT: the median of the repeats' own ratios
and best against best. (b) and (c) are skipped in that mode.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from copylimit import loopback_copy, page_cache_write_rates, warm_page_cache  # noqa: E402
from harness import BrokerProcess, create_topic, stop_all, wait_until  # noqa: E402
from loading import MIB, produce_values  # noqa: E402
from tls_listeners import LISTENERS, PLAINTEXT, SSL, TlsListeners, add_tls_argument, listener_order, ssl_ratio  # noqa: E402

SIZES = (100, 10 * 1024)


@dataclass
class Measurement:
    what: str
    records: int
    value_bytes: int
    seconds: float
    cpu: str
    note: str = ""

    @property
    def mb_per_second(self) -> float:
        return self.value_bytes / MIB / self.seconds

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds


@dataclass
class Loaded:
    topic: str
    record_size: int
    records: int
    end_offsets: list[int]
    log_bytes: int
    seconds: float

    @property
    def value_bytes(self) -> int:
        return self.records * self.record_size


# --- CPU accounting --------------------------------------------------------------------------------


def _process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread, librdkafka's included
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds used by some broker processes (by pid) and, optionally, this process."""

    def __init__(self, brokers: dict[str, BrokerProcess], include_self: bool) -> None:
        self.brokers = brokers
        self.include_self = include_self
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        sample = {name: _process_cpu_seconds(b.pid) for name, b in self.brokers.items()}
        if self.include_self:
            sample["client"] = _self_cpu_seconds()
        return sample

    def report(self, seconds: float) -> str:
        end = self._sample()
        return ", ".join(f"{name} {100 * (end[name] - self.start[name]) / seconds:.0f}%" for name in end)


# --- loading the source ---------------------------------------------------------------------------


def load(
    broker: BrokerProcess, topic: str, record_size: int, total_bytes: int, partitions: int, compression: str
) -> Loaded:
    create_topic(broker.bootstrap, topic, partitions=partitions)
    records = max(1, total_bytes // record_size)
    config = {
        "acks": "all",
        "linger.ms": 10,
        "batch.size": MIB,
        "compression.type": compression,
        "enable.idempotence": True,
        "queue.buffering.max.kbytes": 256 * 1024,
        "queue.buffering.max.messages": 2_000_000,
    }
    seconds = produce_values(broker.bootstrap, topic, partitions, record_size, records, config, timeout=900)
    end_offsets = _end_offsets(broker, topic, partitions)
    if sum(end_offsets) != records:
        raise RuntimeError(f"loading {topic}: the source holds {sum(end_offsets)} records, not {records}")
    log_bytes = sum(f.stat().st_size for d in broker.data_dir.glob(f"{topic}-*") for f in d.glob("*.log"))
    return Loaded(topic, record_size, records, end_offsets, log_bytes, seconds)


def _end_offsets(broker: BrokerProcess, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench-watermarks"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)]
    finally:
        consumer.close()


# --- (a) the shadow link ---------------------------------------------------------------------------


def _admin(broker: BrokerProcess, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        broker.admin_url + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def shadow_link_catch_up(
    source: BrokerProcess,
    shadow: BrokerProcess,
    loaded: Loaded,
    timeout: float,
    link_source: dict[str, Any] | None = None,
    what: str = "(a) shadow link",
) -> Measurement:
    """`link_source`: the spec's `source` (default: the source broker's first listener, plaintext)."""
    name = f"bench-{loaded.record_size}"
    spec = {
        "name": name,
        "source": link_source or {"bootstrap_servers": [source.bootstrap]},
        "topics": {"filters": [{"include": "literal", "name": loaded.topic}], "sync_interval": "5s"},
        "consumer_offsets": {"enabled": False},
        "acls": {"enabled": False},
    }
    expected = {(loaded.topic, p): end for p, end in enumerate(loaded.end_offsets)}
    cpu = CpuMeter({"source": source, "shadow": shadow}, include_self=False)
    started = time.perf_counter()
    _admin(shadow, "POST", "/v1/shadow-links", spec)

    def caught_up() -> bool:
        partitions = {
            (p["topic"], p["partition"]): p
            for p in _admin(shadow, "GET", f"/v1/shadow-links/{name}/status")["partitions"]
        }
        return all(
            (p := partitions.get(tp)) is not None
            and p["lag"] == 0
            and p["source_high_watermark"] == p["shadow_high_watermark"] == end
            for tp, end in expected.items()
        )

    wait_until(caught_up, timeout=timeout, interval=0.1, message=f"link {name} to catch up")
    seconds = time.perf_counter() - started
    return Measurement(what, loaded.records, loaded.value_bytes, seconds, cpu.report(seconds))


# --- (b) the consume -> produce pipeline ------------------------------------------------------------


def mirror_pipeline(
    source: BrokerProcess, target: BrokerProcess, loaded: Loaded, compression: str, timeout: float
) -> Measurement:
    partitions = len(loaded.end_offsets)
    create_topic(target.bootstrap, loaded.topic, partitions=partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": source.bootstrap,
            "group.id": f"mirror-{loaded.topic}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 50 * MIB,
            "max.partition.fetch.bytes": 10 * MIB,
            "queued.max.messages.kbytes": 256 * 1024,
            # librdkafka's defaults (100k queued records a partition, then 1 s fetch back-off)
            # would make the pipeline wait, not work: tuned so the copy is CPU-bound.
            "queued.min.messages": 1_000_000,
            "fetch.queue.backoff.ms": 10,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": target.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 10,
            "batch.size": MIB,
            "compression.type": compression,
            "queue.buffering.max.kbytes": 256 * 1024,
            "queue.buffering.max.messages": 2_000_000,
            "message.max.bytes": 2 * MIB,
        }
    )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _message: Any) -> None:
        if err is not None:
            errors.append(str(err))

    cpu = CpuMeter({"source": source, "target": target}, include_self=True)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    consumer.assign([TopicPartition(loaded.topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    copied = value_bytes = 0
    first_record_after = None
    try:
        while copied < loaded.records:
            if time.monotonic() > deadline or errors:
                raise RuntimeError(
                    f"pipeline: {copied} of {loaded.records} records after {timeout:.0f}s; errors {errors[:3]}"
                )
            # consume() waits for a full batch or the timeout: never ask for more than is left.
            for message in consumer.consume(num_messages=min(10_000, loaded.records - copied), timeout=1.0):
                if message.error() is not None:
                    raise KafkaException(message.error())
                value = message.value()
                headers = message.headers()
                while True:
                    try:
                        producer.produce(
                            loaded.topic,
                            value,
                            message.key(),
                            partition=message.partition(),
                            timestamp=message.timestamp()[1],
                            headers=headers or None,
                            on_delivery=on_delivery,
                        )
                        break
                    except BufferError:
                        producer.poll(0.005)
                copied += 1
                value_bytes += len(value or b"")
            if first_record_after is None and copied:
                first_record_after = time.perf_counter() - started
            producer.poll(0)
        remaining = producer.flush(max(1.0, deadline - time.monotonic()))
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    if remaining or errors:
        raise RuntimeError(f"pipeline: {remaining} records not acknowledged, errors {errors[:3]}")
    return Measurement(
        "(b) consume->produce",
        copied,
        value_bytes,
        seconds,
        cpu.report(seconds),
        f"(the consumer's first record came after {first_record_after:.1f}s)",
    )


# --- (c) the raw loopback copy ----------------------------------------------------------------------


# --- report -----------------------------------------------------------------------------------------


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def _print_table_head(compression: str) -> None:
    print()
    print(f"source loaded with confluent-kafka (acks=all, idempotent, compression {compression}, random values)")
    header = (
        f"{'records':<9}{'case':<24}{'records':>12}{'value MiB':>11}{'seconds':>9}{'records/s':>12}"
        f"{'MB/s':>9}   CPU (% of one core)"
    )
    print(header)
    print("-" * (len(header) + 20))


def _print_rows(loaded: Loaded, measurements: Sequence[Measurement]) -> None:
    """The load of one record size, for reference, then each measurement of it."""
    print(
        f"{_size_label(loaded.record_size):<9}{'load (for reference)':<24}{loaded.records:>12,}"
        f"{loaded.value_bytes / MIB:>11,.0f}{loaded.seconds:>9.1f}{loaded.records / loaded.seconds:>12,.0f}"
        f"{loaded.value_bytes / MIB / loaded.seconds:>9.1f}"
    )
    for m in measurements:
        print(
            f"{'':<9}{m.what:<24}{m.records:>12,}{m.value_bytes / MIB:>11,.0f}{m.seconds:>9.1f}"
            f"{m.records_per_second:>12,.0f}{m.mb_per_second:>9.1f}   {m.cpu} {m.note}".rstrip()
        )


def print_report(rows: list[tuple[Loaded, Measurement, Measurement, Measurement]], compression: str) -> None:
    _print_table_head(compression)
    for loaded, a, b, c in rows:
        _print_rows(loaded, (a, b, c))
        print(
            f"{'':<9}a/b = {a.mb_per_second / b.mb_per_second:.2f}   a/c = {a.mb_per_second / c.mb_per_second:.4f}"
            f"   (source log {loaded.log_bytes / MIB:,.0f} MiB; the link moved it at "
            f"{loaded.log_bytes / MIB / a.seconds:,.1f} log-MiB/s)"
        )
        print()
    print("MB/s = MiB of record values per second. (c) copies a file of the topic's log size, so its records/s")
    print("is the records that size holds, moved at the raw rate. a/b and a/c compare MB/s.")


def print_tls_report(rows: list[tuple[Loaded, dict[str, list[Measurement]]]], compression: str) -> None:
    """--tls: per record size, the best catch-up over each listener, then SSL/PLAINTEXT."""
    _print_table_head(compression)
    for loaded, runs in rows:
        rates = {listener: [m.mb_per_second for m in measurements] for listener, measurements in runs.items()}
        _print_rows(loaded, [best_of(measurements) for measurements in runs.values()])
        print(f"{'':<9}SSL/PLAINTEXT = {ssl_ratio(rates[PLAINTEXT], rates[SSL])}")
        print()
    print(
        "MB/s = MiB of record values per second, from the POST that creates the link until it has caught up. Both\n"
        "listeners are on the source broker; each repeat catches up over PLAINTEXT and over SSL back to back, a fresh\n"
        "shadow each, which goes first alternating. CPU: the source's and the shadow's, over the catch-up."
    )


def start_broker(
    temp_dir: Path, name: str, node_id: int, brokers: list[BrokerProcess], tls: TlsListeners | None = None
) -> BrokerProcess:
    """With `tls`, the broker listens on a PLAINTEXT and an SSL listener (`broker.bootstrap` is the PLAINTEXT one)."""
    config: dict[str, Any] = {"log_level": "WARNING"}
    if tls is not None:
        config["listeners"] = tls.listeners
    broker = BrokerProcess(temp_dir / name, name=name, node_id=node_id, config=config)
    brokers.append(broker)
    broker.start()
    ssl_listener = f", SSL at {broker.listener_bootstrap(SSL)}" if tls is not None else ""
    print(f"{name} broker pid {broker.pid} at {broker.bootstrap}{ssl_listener} (admin {broker.admin_url})", flush=True)
    return broker


def best_of(runs: list[Measurement]) -> Measurement:
    """The fastest run, noting every run's MB/s (the raw copy is a best-of-N too)."""
    best = min(runs, key=lambda m: m.seconds)
    if len(runs) > 1:
        note = f"best of {len(runs)}: " + ", ".join(f"{m.mb_per_second:,.0f}" for m in runs) + " MB/s"
        best.note = f"{best.note} ({note})" if best.note else f"({note})"
    return best


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="MiB of values per record size (default 1024)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions per topic (default 6)")
    parser.add_argument(
        "--compression",
        choices=("none", "lz4"),
        default="none",
        help="compression of the loaded records and of the pipeline's producer (default none)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="cap in seconds on each measured copy")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each case; the fastest counts, as for the raw copy (default 3)"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="do not warm the page cache before each case (see benchmarks/copylimit.py)",
    )
    add_tls_argument(parser, "the link's catch-up; no (b), no (c)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    brokers: list[BrokerProcess] = []
    rows = []
    tls_rows: list[tuple[Loaded, dict[str, list[Measurement]]]] = []
    page_cache = (0.0, 0.0)
    with tempfile.TemporaryDirectory(prefix="umbra-replication-bench-") as temp:
        temp_dir = Path(temp)
        try:
            tls = TlsListeners.create(temp_dir / "pki") if args.tls else None
            source = start_broker(temp_dir, "source", 1, brokers, tls)
            loaded = []
            for size in SIZES:
                print(f"loading {args.mb} MiB of {_size_label(size)} records into the source ...", flush=True)
                loaded.append(load(source, f"bench-{size}", size, args.mb * MIB, args.partitions, args.compression))
            os.sync()
            page_cache = page_cache_write_rates(temp_dir, min(args.mb, 512) * MIB)
            print(f"page-cache writes: {page_cache[0]:,.0f} MiB/s into new pages, "
                  f"{page_cache[1]:,.0f} MiB/s into pages freed a moment ago", flush=True)  # fmt: skip

            def run_fresh(
                name: str, node_id: int, item: Loaded, measure: Callable[[BrokerProcess, Loaded], Measurement]
            ) -> Measurement:
                """One run on a fresh broker, whose files are deleted afterwards (the next run reuses their pages)."""
                broker = start_broker(temp_dir, name, node_id, brokers)
                try:
                    # No dirty pages left by what came before (loading writes GBs), and, unless --cold,
                    # recently freed page-cache pages, as the raw copy's repeats use (benchmarks/copylimit.py).
                    os.sync()
                    if not args.cold:
                        warm_page_cache(temp_dir, item.log_bytes)
                    return measure(broker, item)
                finally:
                    brokers.remove(broker)
                    broker.stop()
                    shutil.rmtree(broker.work_dir, ignore_errors=True)

            def link_catch_ups(item: Loaded) -> dict[str, list[Measurement]]:
                """(a) `--repeats` times; with --tls over each listener, back to back, which goes first alternating."""
                label = _size_label(item.record_size)
                listeners = LISTENERS if tls is not None else (PLAINTEXT,)
                runs: dict[str, list[Measurement]] = {listener: [] for listener in listeners}
                for run in range(args.repeats):
                    for listener in listener_order(listeners, run):
                        over = f" over {listener}" if tls is not None else ""
                        print(f"{label}: (a) shadow link{over} catching up on {item.records:,} records, "
                              f"run {run + 1} ...", flush=True)  # fmt: skip
                        measure = functools.partial(
                            shadow_link_catch_up,
                            source,
                            timeout=args.timeout,
                            link_source=tls.link_source(source, listener) if tls is not None else None,
                            what=f"(a) link over {listener}" if tls is not None else "(a) shadow link",
                        )
                        runs[listener].append(run_fresh(f"shadow-{label}-{listener.lower()}-{run}", 2, item, measure))
                        print(f"  {runs[listener][-1].mb_per_second:,.1f} MB/s", flush=True)
                return runs

            for item in loaded:
                a_runs = link_catch_ups(item)
                if tls is not None:  # the pipeline and the raw copy are not the question
                    tls_rows.append((item, a_runs))
                    continue
                label = _size_label(item.record_size)
                b_runs = []
                for run in range(args.repeats):
                    print(f"{label}: (b) consume -> produce pipeline, run {run + 1} ...", flush=True)
                    b_runs.append(run_fresh(f"target-{label}-{run}", 3, item,
                                            lambda target, it: mirror_pipeline(source, target, it, args.compression, args.timeout)))  # fmt: skip
                    print(f"  {b_runs[-1].mb_per_second:,.1f} MB/s", flush=True)
                os.sync()
                print(f"{label}: (c) raw loopback copy of {item.log_bytes / MIB:,.0f} MiB ...", flush=True)
                seconds, size = loopback_copy(item.log_bytes, temp_dir, repeats=args.repeats)
                scale = item.log_bytes / size  # the copy is whole MiB: scale to the log's size
                c = Measurement("(c) raw loopback copy", item.records, item.value_bytes, seconds * scale, "-")
                rows.append((item, best_of(a_runs[PLAINTEXT]), best_of(b_runs), c))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            errors = stop_all(reversed(brokers))
            for broker in brokers:
                print(f"{broker.name} broker stopped (exit code {broker.last_exit_code})")
            if errors:
                print(f"stopping brokers: {errors}", file=sys.stderr)
    if args.tls:
        print_tls_report(tls_rows, args.compression)
    else:
        print_report(rows, args.compression)
    print(
        f"page cache: {'new pages (--cold)' if args.cold else 'each case starts on recently freed pages'}; "
        f"writes ran at {page_cache[0]:,.0f} MiB/s into new pages and {page_cache[1]:,.0f} MiB/s into freed ones"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
