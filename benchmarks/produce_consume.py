"""Produce and consume throughput and produce latency of umbra, measured with confluent-kafka.

    .venv/bin/python benchmarks/produce_consume.py            # about 2-3 minutes
    .venv/bin/python benchmarks/produce_consume.py --mb 256   # a quicker run (the copy limit is then a memory figure)
    .venv/bin/python benchmarks/produce_consume.py --bootstrap HOST:PORT   # an already running broker

It starts its own `umbra broker` (with tests/harness.py) on free loopback ports in a temporary
directory, and stops it at the end. Then, for 100-byte and 10-KiB records at acks=1 and acks=all:

- produce throughput: `--mb` MiB of incompressible values into a fresh 3-partition topic, as fast as
  the client can send, with latency = delivery-report time - produce() time for every record (this
  is latency under saturation: it includes time queued in the client; every 16th record is timed, and the
  topic's end offsets confirm that every record was stored);
- produce latency at light load: `--latency-records` records with at most `--latency-window` in
  flight and linger.ms=0;
- consume throughput: the same topic read back from the beginning by an assigned consumer.

In the same run it measures the machine's raw loopback copy rate: a file of the same size is sent
with os.sendfile over a loopback TCP socket to a receiver that writes it to another file. Umbra's
throughput is printed as a fraction of that rate. Each produce case starts on recently freed page-cache
pages, as the copy's repeats do (benchmarks/copylimit.py explains why this VM needs it; `--cold` skips it).

    .venv/bin/python benchmarks/produce_consume.py --tls --mb 256 --acks 1   # TLS against plaintext

`--tls` measures instead what TLS costs: the broker gets a PLAINTEXT and an SSL listener (a throw-away CA from
tests/pki.py), and each case (record size, acks) is produced and consumed over one listener, then over the
other, `--repeats` times (default 2), which goes first alternating. It prints each run's produce and consume
MB/s with the broker's CPU, and SSL/PLAINTEXT of each: the median of the repeats' own ratios and best against
best. No light-load latency and no raw copy in that mode.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from copylimit import loopback_copy_rate, page_cache_write_rates, warm_page_cache  # noqa: E402
from harness import BrokerProcess, create_topic  # noqa: E402
from tls_listeners import LISTENERS, PLAINTEXT, SSL, TlsListeners, add_tls_argument, listener_order, ssl_ratio  # noqa: E402

MIB = 1024 * 1024
PARTITIONS = 3
KEY = struct.Struct(">Q")  # every record's key is its index, so a delivery report finds its send time
LATENCY_SAMPLE = 16  # saturated produce runs time every 16th record


@dataclass
class ProduceResult:
    label: str
    record_size: int
    acks: str
    records: int
    payload_bytes: int
    seconds: float
    latencies_ms: list[float]
    broker_cpu_percent: float | None

    @property
    def mb_per_second(self) -> float:
        return self.payload_bytes / MIB / self.seconds

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds


@dataclass
class ConsumeResult:
    label: str
    records: int
    payload_bytes: int
    seconds: float
    broker_cpu_percent: float | None

    @property
    def mb_per_second(self) -> float:
        return self.payload_bytes / MIB / self.seconds

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds


@dataclass
class ListenerCase:
    """--tls: one record size and acks setting, produced and consumed over each listener `--repeats` times."""

    record_size: int
    acks: str
    runs: dict[str, list[tuple[ProduceResult, ConsumeResult]]]  # listener -> (produce, consume) per repeat

    @property
    def label(self) -> str:
        return f"{_size_label(self.record_size)} acks={self.acks}"


class CpuMeter:
    """CPU time of one process from /proc, as a percentage of one core over an interval."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._ticks_per_second = os.sysconf("SC_CLK_TCK")
        self._start_cpu = 0.0
        self._start_wall = 0.0

    def _cpu_seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self._ticks_per_second  # utime + stime

    def start(self) -> None:
        self._start_cpu = self._cpu_seconds() or 0.0
        self._start_wall = time.monotonic()

    def percent(self) -> float | None:
        now_cpu = self._cpu_seconds()
        if now_cpu is None:
            return None
        return 100.0 * (now_cpu - self._start_cpu) / max(1e-9, time.monotonic() - self._start_wall)


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def payload_pool(record_size: int) -> tuple[bytes, int]:
    """One random buffer; record i's value is a slice of it, so values differ and do not compress."""
    pool = os.urandom(record_size * 1024 + record_size)
    return pool, 1024


def produce(
    connection: Mapping[str, str],
    topic: str,
    record_size: int,
    acks: str,
    total_bytes: int,
    max_seconds: float,
    cpu: CpuMeter,
) -> ProduceResult:
    pool, slots = payload_pool(record_size)
    values = [pool[i * record_size : (i + 1) * record_size] for i in range(slots)]
    target_records = max(1, total_bytes // record_size)
    send_times = [0.0] * target_records
    latencies_ms: list[float] = []
    errors: list[str] = []
    now = time.perf_counter

    def on_delivery(error: KafkaError | None, message: object) -> None:
        if error is not None:
            errors.append(str(error))
            return
        index = KEY.unpack(message.key())[0]  # type: ignore[attr-defined]
        latencies_ms.append((now() - send_times[index]) * 1000.0)

    producer = Producer(
        {
            **connection,
            "acks": acks,
            "linger.ms": 5,
            "batch.size": MIB,
            "compression.type": "none",
            "queue.buffering.max.kbytes": 256 * 1024,
            "enable.idempotence": False,
        }
    )
    cpu.start()
    started = now()
    deadline = started + max_seconds
    sent = 0
    for index in range(target_records):
        if index % 1024 == 0 and now() > deadline:
            break
        # A delivery report for every LATENCY_SAMPLE-th record only: a Python callback per record costs the
        # client (which shares the two cores with the broker) more than the broker's work per record.
        sampled = index % LATENCY_SAMPLE == 0
        if sampled:
            send_times[index] = now()
        while True:
            try:
                producer.produce(
                    topic,
                    values[index % slots],
                    KEY.pack(index),
                    partition=index % PARTITIONS,
                    on_delivery=on_delivery if sampled else None,
                )
                break
            except BufferError:
                producer.poll(0.005)
        sent += 1
        if index % 256 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    seconds = now() - started
    if remaining or errors:
        raise RuntimeError(f"produce to {topic}: {remaining} undelivered, {len(errors)} errors, first: {errors[:3]}")
    stored = _records_in(connection, topic)  # the unsampled records have no delivery report: count them here
    if stored != sent:
        raise RuntimeError(f"produce to {topic}: {sent} records sent, the topic holds {stored}")
    return ProduceResult(
        label=f"{_size_label(record_size)} acks={acks}",
        record_size=record_size,
        acks=acks,
        records=sent,
        payload_bytes=sent * record_size,
        seconds=seconds,
        latencies_ms=latencies_ms,
        broker_cpu_percent=cpu.percent(),
    )


def _records_in(connection: Mapping[str, str], topic: str) -> int:
    consumer = Consumer({**connection, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS))
    finally:
        consumer.close()


def light_load_latency(
    connection: Mapping[str, str], topic: str, record_size: int, acks: str, records: int, window: int
) -> list[float]:
    """Per-record latency with at most `window` records in flight and no lingering."""
    value = os.urandom(record_size)
    latencies_ms: list[float] = []
    send_times = [0.0] * records
    now = time.perf_counter

    def on_delivery(error: KafkaError | None, message: object) -> None:
        if error is not None:
            raise KafkaException(error)
        index = KEY.unpack(message.key())[0]  # type: ignore[attr-defined]
        latencies_ms.append((now() - send_times[index]) * 1000.0)

    producer = Producer({**connection, "acks": acks, "linger.ms": 0, "enable.idempotence": False})
    for index in range(records):
        while index - len(latencies_ms) >= window:
            producer.poll(0.05)
        send_times[index] = now()
        producer.produce(topic, value, KEY.pack(index), partition=index % PARTITIONS, on_delivery=on_delivery)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"latency run on {topic}: records left undelivered")
    return latencies_ms


def consume(
    connection: Mapping[str, str],
    topic: str,
    record_size: int,
    expected_records: int,
    cpu: CpuMeter,
    max_seconds: float,
) -> ConsumeResult:
    consumer = Consumer(
        {
            **connection,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            # librdkafka's default fetch sizes (1 MiB a partition): 16 MiB a partition was measured 2.4x
            # slower, the client then page-faulting in a fresh ~50 MB receive buffer for every response.
            "queued.max.messages.kbytes": 256 * 1024,
            # librdkafka's defaults (100k queued records a partition, then a 1 s fetch back-off) would make
            # the 100-byte case wait, not work.
            "queued.min.messages": 1_000_000,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    # consume() often returns only at its timeout, even with records queued, so the timeout is
    # short; a batch is about 1 MiB, never more than the client's fetch queue holds.
    batch = max(1, min(10_000, MIB // record_size))
    records = 0
    payload = 0
    deadline = time.perf_counter() + max_seconds
    try:
        # The clock starts at the first record, so connecting and the first metadata round trip
        # are not counted; that first record's bytes are not counted either.
        while records == 0:
            for message in consumer.consume(num_messages=1, timeout=1.0):
                if message.error() is not None:
                    raise KafkaException(message.error())
                records = 1
            if time.perf_counter() > deadline:
                raise RuntimeError(f"consume {topic}: no record after {max_seconds}s")
        cpu.start()
        started = time.perf_counter()
        while records < expected_records:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"consume {topic}: {records} of {expected_records} records after {max_seconds}s")
            for message in consumer.consume(num_messages=batch, timeout=0.01):
                if message.error() is not None:
                    raise KafkaException(message.error())
                records += 1
                payload += len(message.value() or b"")
        seconds = time.perf_counter() - started
        records -= 1  # the first one, read before the clock started
    finally:
        consumer.close()
    return ConsumeResult(topic, records, payload, seconds, cpu.percent())


def produce_and_consume(
    args: argparse.Namespace,
    temp_dir: Path,
    cpu: CpuMeter,
    bootstrap: str,
    connection: Mapping[str, str],
    topic: str,
    record_size: int,
    acks: str,
    over: str = "",
) -> tuple[ProduceResult, ConsumeResult]:
    """`--mb` MiB produced into a new topic (created over `bootstrap`) through `connection`, then read back."""
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    # Like the copies: no dirty pages left by the cases before (the kernel throttles writers
    # by how much is dirty), and recently freed page-cache pages, as the copy's repeats use.
    os.sync()
    if not args.cold:
        warm_page_cache(temp_dir, args.mb * MIB)
    print(f"produce {args.mb} MiB of {_size_label(record_size)} records, acks={acks}{over} ...", flush=True)
    result = produce(connection, topic, record_size, acks, args.mb * MIB, args.max_seconds, cpu)
    print(f"consume {topic}{over} ...", flush=True)
    return result, consume(connection, topic, record_size, result.records, cpu, max_seconds=120)


def measure_over_listeners(
    args: argparse.Namespace,
    temp_dir: Path,
    cpu: CpuMeter,
    bootstrap: str,
    connections: Mapping[str, Mapping[str, str]],
    run_id: str,
    sizes: Sequence[int],
    acks_settings: Sequence[str],
) -> list[ListenerCase]:
    """--tls: each case over every listener, back to back, the order alternating from one repeat to the next."""
    cases: list[ListenerCase] = []
    for size in sizes:
        for acks in acks_settings:
            case = ListenerCase(size, acks, {listener: [] for listener in connections})
            for repeat in range(args.repeats):
                for listener in listener_order(list(connections), repeat):
                    topic = f"bench-{run_id}-{len(cases) + 1}-{size}B-acks{acks}-{listener.lower()}-{repeat + 1}"
                    result, consume_result = produce_and_consume(
                        args, temp_dir, cpu, bootstrap, connections[listener], topic, size, acks, f" over {listener}"
                    )
                    case.runs[listener].append((result, consume_result))
                    print(f"  produce {result.mb_per_second:,.1f} MB/s, consume {consume_result.mb_per_second:,.1f} "
                          f"MB/s", flush=True)  # fmt: skip
            cases.append(case)
    return cases


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def print_report(
    produced: list[ProduceResult],
    consumed: list[ConsumeResult],
    light_latency: dict[str, list[float]],
    loopback_rates: tuple[float, float],
    window: int,
) -> None:
    loopback_mb_per_second = max(loopback_rates)
    print()
    print(
        f"raw loopback file -> sendfile -> TCP -> file copy: {loopback_mb_per_second:,.0f} MB/s "
        f"(best of 3 before the broker runs: {loopback_rates[0]:,.0f}; best of 3 after: {loopback_rates[1]:,.0f})"
    )
    print()
    header = f"{'produce':<18}{'records':>10}{'MB/s':>9}{'records/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'broker CPU':>12}{'of loopback':>13}"
    print(header)
    print("-" * len(header))
    for result in produced:
        print(
            f"{result.label:<18}{result.records:>10,}{result.mb_per_second:>9.1f}{result.records_per_second:>12,.0f}"
            f"{percentile(result.latencies_ms, 0.50):>9.1f}{percentile(result.latencies_ms, 0.99):>9.1f}"
            f"{_cpu(result.broker_cpu_percent):>12}{result.mb_per_second / loopback_mb_per_second:>13.2%}"
        )
    print(
        "(latency under saturation: delivery report minus produce() call, including time queued in the client;"
        f" every {LATENCY_SAMPLE}th record)"
    )
    print()
    header = f"{'light-load latency':<24}{'records':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(header)
    print("-" * len(header))
    for label, latencies in light_latency.items():
        print(
            f"{label:<24}{len(latencies):>10,}{percentile(latencies, 0.50):>9.2f}{percentile(latencies, 0.99):>9.2f}"
            f"{max(latencies):>9.2f}"
        )
    print(f"(at most {window} records in flight, linger.ms=0)")
    print()
    header = f"{'consume':<34}{'records':>10}{'MB/s':>9}{'records/s':>12}{'broker CPU':>12}{'of loopback':>13}"
    print(header)
    print("-" * len(header))
    for consume_result in consumed:
        print(
            f"{consume_result.label:<34}{consume_result.records:>10,}{consume_result.mb_per_second:>9.1f}{consume_result.records_per_second:>12,.0f}"
            f"{_cpu(consume_result.broker_cpu_percent):>12}{consume_result.mb_per_second / loopback_mb_per_second:>13.2%}"
        )
    print()
    print(
        "MB = MiB of record values (keys, headers and protocol overhead not counted); 'of loopback' = MB/s / raw copy MB/s"
    )


def print_listener_report(cases: list[ListenerCase]) -> None:
    print()
    header = (
        f"{'over TLS':<18}{'listener':<11}{'repeat':>7}{'records':>11}{'produce MB/s':>14}{'broker CPU':>12}"
        f"{'consume MB/s':>14}{'broker CPU':>12}"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        for listener, runs in case.runs.items():
            for repeat, (produced, consumed) in enumerate(runs):
                print(
                    f"{case.label:<18}{listener:<11}{repeat + 1:>7}{produced.records:>11,}"
                    f"{produced.mb_per_second:>14.1f}{_cpu(produced.broker_cpu_percent):>12}"
                    f"{consumed.mb_per_second:>14.1f}{_cpu(consumed.broker_cpu_percent):>12}"
                )
        for phase, index in (("produce", 0), ("consume", 1)):
            rates = {listener: [run[index].mb_per_second for run in runs] for listener, runs in case.runs.items()}
            print(f"{case.label}: {phase} SSL/PLAINTEXT = {ssl_ratio(rates[PLAINTEXT], rates[SSL])}")
        print()
    print(
        "MB = MiB of record values. Both listeners are on one broker; each repeat runs the case over PLAINTEXT and\n"
        "over SSL back to back, which goes first alternating. Broker CPU: % of one core over the phase (its event loop\n"
        "does the TLS work too, so near 100 % means the broker is the bottleneck)."
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="MiB of values to produce per case (default 1024)")
    parser.add_argument("--sizes", default="100,10240", help="record value sizes in bytes (default 100,10240)")
    parser.add_argument("--acks", default="1,all", help="acks settings to run (default 1,all)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="cap on each produce run (default 20)")
    parser.add_argument("--latency-records", type=int, default=2000, help="records in each light-load latency run")
    parser.add_argument("--latency-window", type=int, default=8, help="records in flight in the light-load runs")
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="passed to `umbra broker --set`"
    )
    parser.add_argument(
        "--cold", action="store_true", help="do not warm the page cache before each case (benchmarks/copylimit.py)"
    )
    add_tls_argument(parser, "no light-load latency, no raw copy")
    parser.add_argument("--repeats", type=int, default=2, help="with --tls: runs per case and listener (default 2)")
    args = parser.parse_args(argv)
    if args.tls and args.bootstrap:
        parser.error("--tls starts its own broker (with a PLAINTEXT and an SSL listener): not with --bootstrap")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    page_cache = (0.0, 0.0)
    acks_settings = args.acks.split(",")
    produced: list[ProduceResult] = []
    consumed: list[ConsumeResult] = []
    light_latency: dict[str, list[float]] = {}
    loopback_rates: list[float] = []
    listener_cases: list[ListenerCase] = []
    with tempfile.TemporaryDirectory(prefix="umbra-bench-") as temp:
        temp_dir = Path(temp)
        broker: BrokerProcess | None = None
        try:
            if args.bootstrap:
                bootstrap, broker_pid = args.bootstrap, None
                connections = {PLAINTEXT: {"bootstrap.servers": bootstrap}}
            else:
                extra_args = [arg for setting in args.set for arg in ("--set", setting)]
                tls = TlsListeners.create(temp_dir / "pki") if args.tls else None
                config = {"listeners": tls.listeners} if tls is not None else None
                broker = BrokerProcess(temp_dir / "broker", config=config, extra_args=extra_args).start()
                bootstrap, broker_pid = broker.bootstrap, broker.pid
                print(f"umbra broker pid {broker.pid} at {bootstrap}, data in {broker.data_dir}")
                if tls is not None:
                    connections = {listener: tls.librdkafka_settings(broker, listener) for listener in LISTENERS}
                    print(f"  its SSL listener at {connections[SSL]['bootstrap.servers']}")
                else:
                    connections = {PLAINTEXT: {"bootstrap.servers": bootstrap}}
            page_cache = page_cache_write_rates(temp_dir, min(args.mb, 512) * MIB)
            if not args.tls:
                print("raw loopback copy ...", flush=True)
                os.sync()
                loopback_rates.append(loopback_copy_rate(args.mb * MIB, temp_dir))
            cpu = CpuMeter(broker_pid)
            run_id = uuid.uuid4().hex[:6]
            for listener, connection in connections.items():  # connections, caches (and TLS handshakes)
                warm_up_topic = f"bench-{run_id}-warm-up-{listener.lower()}"
                create_topic(bootstrap, warm_up_topic, partitions=PARTITIONS)
                produce(connection, warm_up_topic, 1000, "1", 8 * MIB, args.max_seconds, cpu)
            if args.tls:
                listener_cases = measure_over_listeners(
                    args, temp_dir, cpu, bootstrap, connections, run_id, sizes, acks_settings
                )
            else:
                for size in sizes:
                    for acks in acks_settings:
                        topic = f"bench-{run_id}-{len(produced) + 1}-{size}B-acks{acks}"
                        result, consume_result = produce_and_consume(
                            args, temp_dir, cpu, bootstrap, connections[PLAINTEXT], topic, size, acks
                        )
                        produced.append(result)
                        consumed.append(consume_result)
                        latency_topic = topic + "-latency"
                        create_topic(bootstrap, latency_topic, partitions=PARTITIONS)
                        light_latency[f"{_size_label(size)} acks={acks}"] = light_load_latency(
                            connections[PLAINTEXT], latency_topic, size, acks, args.latency_records, args.latency_window
                        )
                print("raw loopback copy (again, after the broker's writes) ...", flush=True)
                os.sync()
                loopback_rates.append(loopback_copy_rate(args.mb * MIB, temp_dir))
        finally:
            if broker is not None:
                code = broker.stop()
                print(f"umbra broker stopped (exit code {code})")
    if args.tls:
        print_listener_report(listener_cases)
    else:
        print_report(produced, consumed, light_latency, (loopback_rates[0], loopback_rates[1]), args.latency_window)
    print(
        f"page cache: {'new pages (--cold)' if args.cold else 'each produce case starts on recently freed pages'}; "
        f"writes ran at {page_cache[0]:,.0f} MiB/s into new pages and {page_cache[1]:,.0f} MiB/s into freed ones "
        "(benchmarks/copylimit.py)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
