"""Recovery point under load: how long after the source acknowledges a record does a shadow consumer see it?

    .venv/bin/python benchmarks/rpo.py                       # 20 MB/s of 1-KiB records for 60 s, per case
    .venv/bin/python benchmarks/rpo.py --seconds 10 --mbps 5  # a quick run
    .venv/bin/python benchmarks/rpo.py --profile 20           # also py-spy the shadow broker for 20 s per case

For each case (`--link-fetch-wait-ms`, default `500,100`: the link's `source.client.fetch_max_wait_ms`, 500 being
the spec's default; `fetch_min_bytes` stays at its default 1) it starts a fresh source and a fresh shadow broker
(tests/harness.py, free loopback ports, a temporary directory), creates a `--partitions`-partition topic on the
source and a shadow link for it, and waits until the link shows every partition ACTIVE. Then, in this process:

  * a paced confluent-kafka producer (acks=1, linger.ms=`--linger-ms`, no compression) sends `--mbps` MiB/s of
    `--record-size`-byte random values for `--seconds` seconds, round robin over the partitions; each key carries
    the record's sequence number. A poller thread serves delivery reports as they arrive: a record's
    *acknowledgement time* is time.monotonic() in its delivery callback;
  * a confluent-kafka consumer on the shadow broker, assigned to every partition of the shadow topic from the
    beginning (fetch.wait.max.ms=`--consumer-fetch-wait-ms`, default 5, so that the consumer's own long poll adds
    little), notes time.monotonic() when each record comes out of poll()/consume(): its *seen time*.

A one-second warm-up at the same rate (records that are not counted) comes first, so that connections are up.
After the last record is produced the consumer gets up to `--drain` seconds to see every acknowledged record.

It prints, per case: the achieved produce rate, p50/p90/p99/p99.9/max of (seen - acknowledged) over every record,
the count matched, records acknowledged but never seen, the latency per 10-second window (a link that falls
behind shows as a growing latency), the source's own produce latency (acknowledged - produce()), and the CPU
the brokers and this process used. Everything is one process's time.monotonic(); both clients share one
interpreter (three threads; the switch interval is lowered to 1 ms so that a thread waiting for the GIL does
not wait long). Brokers and py-spy are stopped by pid at the end, also on error or Ctrl-C. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402
from harness import BrokerProcess, create_topic, stop_all, wait_until  # noqa: E402

MIB = 1024 * 1024
KEY = struct.Struct(">cQ")  # b"w" (warm-up) or b"m" (measured), then the sequence number
WARMUP, MEASURED = b"w", b"m"
WINDOW_SECONDS = 10.0
PY_SPY = Path(sys.executable).parent / "py-spy"


# --- shared helpers (benchmarks/partitions.py imports these) ---------------------------------------


def admin(broker: BrokerProcess, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        broker.admin_url + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def link_spec(name: str, source: BrokerProcess, topic: str, client: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"bootstrap_servers": [source.bootstrap], "client": dict(client or {})},
        "topics": {"filters": [{"include": "literal", "name": topic}], "sync_interval": "5s"},
        "consumer_offsets": {"enabled": False},
        "acls": {"enabled": False},
    }


def link_partitions(shadow: BrokerProcess, name: str) -> dict[tuple[str, int], dict[str, Any]]:
    status = admin(shadow, "GET", f"/v1/shadow-links/{name}/status")
    return {(p["topic"], p["partition"]): p for p in status["partitions"]}


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread, librdkafka's included
    return usage.ru_utime + usage.ru_stime


def proc_status_kib(pid: int, key: str) -> int:
    """A `kB` figure from /proc/PID/status, e.g. VmHWM (peak resident set) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class CpuMeter:
    """CPU seconds, as % of one core, used by some processes (by pid) and, optionally, this process."""

    def __init__(self, pids: dict[str, int], include_self: bool = False) -> None:
        self.pids = pids
        self.include_self = include_self
        self.started = time.monotonic()
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        sample = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.include_self:
            sample["client"] = self_cpu_seconds()
        return sample

    def report(self) -> str:
        seconds = time.monotonic() - self.started
        end = self._sample()
        return ", ".join(f"{name} {100 * (end[name] - self.start[name]) / seconds:.0f}%" for name in end)


def profile_directory(args: argparse.Namespace, temp_dir: Path) -> Path | None:
    """Where py-spy output goes when ``--profile`` asks for it (``--profile-dir``, else the temp dir)."""
    if not args.profile:
        return None
    directory: Path = args.profile_dir or (temp_dir / "profiles")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class PySpy:
    """`py-spy record -f raw` of one process for a bounded time; stopped by pid if it overruns."""

    def __init__(self, pid: int, seconds: int, output: Path, idle: bool = False) -> None:
        self.output = output
        self.seconds = seconds
        self.process = subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "-p",
                str(pid),
                "-o",
                str(output),
                "-f",
                "raw",
                "-d",
                str(seconds),
                "--threads",
                "--nonblocking",
                *(["--idle"] if idle else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self) -> str:
        """Wait for the recording (bounded); returns a summary of its top frames, or why there is none."""
        try:
            _, err = self.process.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()  # by pid: the Popen object's own process
            self.process.wait(timeout=10)
            return "py-spy overran its duration and was killed"
        if not self.output.exists():
            return f"py-spy wrote nothing (exit {self.process.returncode}): {err.decode(errors='replace')[-300:]}"
        return summarize_raw_profile(self.output)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def summarize_raw_profile(path: Path, top: int = 15) -> str:
    """Top self and inclusive frames of a py-spy raw (collapsed stacks) file, in % of samples, per thread too."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread (", "process ")):
            # --threads puts "thread (0x...)" (and sometimes the process) first: keep it for the thread split
            thread_frames = [f for f in frames if f.startswith("thread (")]
            threads[thread_frames[0] if thread_frames else frames[0]] += count
            frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        total += count
        if not frames:
            continue
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples"]
    if threads:
        lines.append("  by thread: " + ", ".join(f"{t} {100 * c / total:.0f}%" for t, c in threads.most_common(6)))
    lines.append("  top self frames:")
    lines += [f"    {100 * c / total:5.1f}%  {frame}" for frame, c in self_counts.most_common(top)]
    lines.append("  top inclusive frames (umbra code and the event loop):")
    shown = [
        (frame, c)
        for frame, c in inclusive.most_common()
        if "umbra/" in frame or "asyncio" in frame or "selectors" in frame or "concurrent" in frame
    ][:top]
    lines += [f"    {100 * c / total:5.1f}%  {frame}" for frame, c in shown]
    return "\n".join(lines)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def ms(value: float) -> str:
    return f"{1000 * value:,.1f}"


# --- the measurement -------------------------------------------------------------------------------


@dataclass
class Case:
    link_fetch_wait_ms: int
    label: str
    target_rate: float = 0.0
    produced: int = 0
    produce_seconds: float = 0.0
    acked: int = 0
    failed: int = 0
    matched: int = 0
    never_seen: int = 0
    negative: int = 0
    latencies: list[float] = field(default_factory=list)
    produce_latencies: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)
    windows: list[tuple[float, int, float, float, float]] = field(default_factory=list)
    cpu: str = ""
    link_status: str = ""
    profile: str = ""


def run_case(args: argparse.Namespace, link_fetch_wait_ms: int, temp_dir: Path, profile_dir: Path | None) -> Case:
    label = f"link fetch_max_wait_ms={link_fetch_wait_ms}" + (" (spec default)" if link_fetch_wait_ms == 500 else "")
    case = Case(link_fetch_wait_ms, label)
    work = temp_dir / f"case-{link_fetch_wait_ms}"
    brokers: list[BrokerProcess] = []
    spies: list[PySpy] = []
    try:
        source = BrokerProcess(work / "source", name="source", node_id=1, config={"log_level": "WARNING"})
        shadow = BrokerProcess(
            work / "shadow", name="shadow", node_id=2, config={"log_level": "WARNING", "auto_create_topics": False}
        )
        for broker in (source, shadow):
            brokers.append(broker)
            broker.start()
            print(
                f"  {broker.name} broker pid {broker.pid} at {broker.bootstrap} (admin {broker.admin_url})", flush=True
            )
        topic = "rpo"
        create_topic(source.bootstrap, topic, partitions=args.partitions)
        name = "rpo-link"
        client = {"fetch_max_wait_ms": link_fetch_wait_ms, "fetch_min_bytes": 1}
        admin(shadow, "POST", "/v1/shadow-links", link_spec(name, source, topic, client))
        wanted = {(topic, p) for p in range(args.partitions)}

        def link_active() -> bool:
            parts = link_partitions(shadow, name)
            return all(tp in parts and parts[tp]["state"] == "ACTIVE" for tp in wanted)

        wait_until(link_active, timeout=60, interval=0.1, message=f"link {name} ACTIVE on every partition")
        measure(args, case, source, shadow, topic, profile_dir, spies)
        parts = link_partitions(shadow, name)
        case.link_status = ", ".join(
            f"p{tp[1]}: lag {p['lag']}, shadow HW {p['shadow_high_watermark']}" for tp, p in sorted(parts.items())
        )
        if spies:
            case.profile = spies[0].finish()
        return case
    finally:
        for spy in spies:
            spy.stop()
        errors = stop_all(reversed(brokers))
        if errors:
            print(f"  stopping brokers: {errors}", file=sys.stderr)


def measure(
    args: argparse.Namespace,
    case: Case,
    source: BrokerProcess,
    shadow: BrokerProcess,
    topic: str,
    profile_dir: Path | None,
    spy_holder: list[PySpy],
) -> None:
    size = args.record_size
    rate = args.mbps * MIB / size  # records per second
    total = max(1, int(rate * args.seconds))
    warmup = max(1, int(rate * 1.0))
    case.target_rate = rate
    monotonic = time.monotonic
    produced_at = array.array("d", bytes(8 * total))
    acked_at = array.array("d", bytes(8 * total))
    seen_at = array.array("d", bytes(8 * total))
    counts = {"acked": 0, "failed": 0, "seen": 0, "warm_acked": 0, "warm_seen": 0}
    errors: list[str] = []
    stop = threading.Event()
    key_of = KEY.unpack

    def on_delivery(err: Any, message: Any) -> None:
        now = monotonic()
        kind, seq = key_of(message.key())
        if err is not None:
            counts["failed"] += 1
            if len(errors) < 5:
                errors.append(str(err))
        elif kind == MEASURED:
            acked_at[seq] = now
            counts["acked"] += 1
        else:
            counts["warm_acked"] += 1

    producer = Producer(
        {
            "bootstrap.servers": source.bootstrap,
            "acks": 1,
            "linger.ms": args.linger_ms,
            "compression.type": "none",
            "queue.buffering.max.kbytes": 256 * 1024,
            "queue.buffering.max.messages": 1_000_000,
            "on_delivery": on_delivery,
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": shadow.bootstrap,
            "group.id": "rpo-bench",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": args.consumer_fetch_wait_ms,
            "fetch.min.bytes": 1,
            "queued.min.messages": 1_000_000,
            "fetch.queue.backoff.ms": 1,
        }
    )

    def poll_producer() -> None:
        while not stop.is_set():
            producer.poll(0.05)  # wakes as soon as a delivery report is queued

    def consume() -> None:
        deadline = monotonic() + args.seconds + args.drain + 120  # bounded whatever happens
        while not stop.is_set() and monotonic() < deadline:
            first = consumer.poll(0.05)
            if first is None:
                continue
            batch = [first]
            batch += consumer.consume(num_messages=10_000, timeout=0)  # whatever else is queued, no waiting
            now = monotonic()
            for message in batch:
                if message.error() is not None:
                    if len(errors) < 5:
                        errors.append(f"consumer: {message.error()}")
                    continue
                kind, seq = key_of(message.key())
                if kind == MEASURED:
                    if not seen_at[seq]:
                        seen_at[seq] = now
                        counts["seen"] += 1
                else:
                    counts["warm_seen"] += 1

    pool = os.urandom(size * 257)
    values = [pool[i * size : (i + 1) * size] for i in range(256)]
    partitions = args.partitions

    def send(kind: bytes, count: int, stamps: array.array[float] | None, seconds_cap: float) -> tuple[int, float]:
        """Produce ``count`` records paced at ``rate``; returns (records produced, seconds)."""
        started = monotonic()
        deadline = started + seconds_cap
        index = 0
        while index < count:
            now = monotonic()
            if now > deadline:
                break
            due = min(count, int((now - started) * rate) + 1)
            while index < due:
                try:
                    producer.produce(topic, values[index & 255], KEY.pack(kind, index), partition=index % partitions)
                except BufferError:
                    break  # the client's queue is full: the poller thread drains it; try again next tick
                if stamps is not None:
                    stamps[index] = monotonic()
                index += 1
            time.sleep(0.0005)
        return index, monotonic() - started

    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    threads = [threading.Thread(target=poll_producer, daemon=True), threading.Thread(target=consume, daemon=True)]
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    for thread in threads:
        thread.start()
    try:
        sent, _ = send(WARMUP, warmup, None, 10)
        wait_until(
            lambda: counts["warm_seen"] >= sent and counts["warm_acked"] >= sent,
            timeout=60,
            interval=0.05,
            message=lambda: f"warm-up: {counts['warm_acked']} acked, {counts['warm_seen']} seen of {sent}",
        )
        cpu = CpuMeter({"source": source.pid, "shadow": shadow.pid}, include_self=True)
        if profile_dir is not None and args.profile:
            spy_holder.append(
                PySpy(
                    shadow.pid,
                    min(args.profile, args.seconds),
                    profile_dir / f"shadow-wait{case.link_fetch_wait_ms}.txt",
                )
            )
        print(f"  producing {args.mbps} MiB/s of {size}-byte records for {args.seconds:.0f}s ...", flush=True)
        case.produced, case.produce_seconds = send(MEASURED, total, produced_at, args.seconds * 1.5 + 10)
        remaining = producer.flush(30)
        case.cpu = cpu.report()
        # Let the consumer see what was acknowledged (bounded by --drain).
        try:
            wait_until(lambda: counts["seen"] >= counts["acked"], timeout=args.drain, interval=0.05)
        except TimeoutError:
            pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        sys.setswitchinterval(old_switch)
        consumer.close()
    if remaining:
        errors.append(f"{remaining} records still unacknowledged after flush")
    if errors:
        print(f"  errors: {errors}", file=sys.stderr)
    case.acked, case.failed = counts["acked"], counts["failed"]

    start = produced_at[0]
    latencies: list[float] = []
    produce_latencies: list[float] = []
    end_to_end: list[float] = []
    by_window: dict[int, list[float]] = {}
    never_seen = negative = 0
    for index in range(case.produced):
        acked = acked_at[index]
        if not acked:
            continue
        produce_latencies.append(acked - produced_at[index])
        seen = seen_at[index]
        if not seen:
            never_seen += 1
            continue
        latency = seen - acked
        end_to_end.append(seen - produced_at[index])
        if latency < 0:
            negative += 1  # seen before its delivery callback ran: counted as it is (a negative latency)
        latencies.append(latency)
        by_window.setdefault(int((acked - start) // WINDOW_SECONDS), []).append(latency)
    latencies.sort()
    produce_latencies.sort()
    end_to_end.sort()
    case.latencies, case.produce_latencies, case.end_to_end = latencies, produce_latencies, end_to_end
    case.matched, case.never_seen, case.negative = len(latencies), never_seen, negative
    for window, values_ in sorted(by_window.items()):
        values_.sort()
        case.windows.append(
            (window * WINDOW_SECONDS, len(values_), percentile(values_, 0.5), percentile(values_, 0.99), values_[-1])
        )


def print_case(args: argparse.Namespace, case: Case) -> None:
    achieved = case.produced / case.produce_seconds if case.produce_seconds else 0.0
    lat = case.latencies
    print()
    print(f"case: {case.label}; consumer fetch.wait.max.ms={args.consumer_fetch_wait_ms}; {args.partitions} partitions")
    print(
        f"  produce: target {case.target_rate:,.0f} records/s ({args.mbps} MiB/s); achieved {achieved:,.0f} records/s"
        f" = {achieved * args.record_size / MIB:.2f} MiB/s ({case.produced:,} records in {case.produce_seconds:.1f}s;"
        f" acked {case.acked:,}, failed {case.failed:,})"
    )
    pl = case.produce_latencies
    print(
        f"  source ack latency (acked - produce()): p50 {ms(percentile(pl, 0.5))} ms, p99 {ms(percentile(pl, 0.99))} ms,"
        f" max {ms(pl[-1]) if pl else 'nan'} ms"
    )
    if lat:
        print(
            f"  ack -> seen on the shadow: p50 {ms(percentile(lat, 0.5))} ms, p90 {ms(percentile(lat, 0.9))} ms,"
            f" p99 {ms(percentile(lat, 0.99))} ms, p99.9 {ms(percentile(lat, 0.999))} ms, max {ms(lat[-1])} ms,"
            f" min {ms(lat[0])} ms"
        )
    e2e = case.end_to_end
    if e2e:
        print(
            f"  produce() -> seen on the shadow (does not depend on when the ack callback ran): p50 {ms(percentile(e2e, 0.5))}"
            f" ms, p99 {ms(percentile(e2e, 0.99))} ms, max {ms(e2e[-1])} ms"
        )
    print(
        f"  matched {case.matched:,} of {case.acked:,} acknowledged; never seen {case.never_seen:,}"
        f" (after --drain {args.drain:.0f}s); seen before the ack callback ran: {case.negative:,}"
    )
    print(
        "  per 10 s window of ack time: "
        + "; ".join(f"{t:.0f}s n={n:,} p50 {ms(p50)} p99 {ms(p99)} max {ms(mx)}" for t, n, p50, p99, mx in case.windows)
    )
    print(f"  CPU over the produce phase (% of one core): {case.cpu}")
    print(f"  link status at the end: {case.link_status}")
    if case.profile:
        print("  py-spy of the shadow broker during the produce phase:")
        print("\n".join("    " + line for line in case.profile.splitlines()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="seconds of measured load per case (default 60)")
    parser.add_argument("--mbps", type=float, default=20, help="MiB/s of record values to produce (default 20)")
    parser.add_argument("--record-size", type=int, default=1024, help="bytes per record value (default 1024)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic (default 3)")
    parser.add_argument("--linger-ms", type=float, default=1, help="producer linger.ms (default 1)")
    parser.add_argument(
        "--link-fetch-wait-ms",
        default="500,100",
        help="comma-separated link source.client.fetch_max_wait_ms values, one case each (default 500,100)",
    )
    parser.add_argument(
        "--consumer-fetch-wait-ms", type=int, default=5, help="the shadow consumer's fetch.wait.max.ms (default 5)"
    )
    parser.add_argument(
        "--drain", type=float, default=15, help="seconds to wait for stragglers at the end (default 15)"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="SECONDS", help="py-spy the shadow broker for SECONDS per case"
    )
    parser.add_argument("--profile-dir", type=Path, default=None, help="where py-spy output goes (default: temp dir)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 3600 or args.mbps <= 0 or args.partitions < 1:
        parser.error("--seconds must be in (0, 3600], --mbps > 0, --partitions >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cases = []
    with tempfile.TemporaryDirectory(prefix="umbra-rpo-bench-") as temp:
        temp_dir = Path(temp)
        profile_dir = profile_directory(args, temp_dir)
        try:
            for wait_ms in (int(x) for x in args.link_fetch_wait_ms.split(",") if x.strip()):
                print(f"case link fetch_max_wait_ms={wait_ms}: starting a source and a shadow broker ...", flush=True)
                case = run_case(args, wait_ms, temp_dir, profile_dir)
                print_case(args, case)
                cases.append(case)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    print()
    print("summary (ack on the source -> seen by a consumer on the shadow; targets p50 <= 10 ms, p99 <= 50 ms):")
    for case in cases:
        lat = case.latencies
        achieved = case.produced / case.produce_seconds * args.record_size / MIB if case.produce_seconds else 0
        print(
            f"  {case.label:<44} {achieved:6.2f} MiB/s  p50 {ms(percentile(lat, 0.5)):>8} ms  "
            f"p99 {ms(percentile(lat, 0.99)):>8} ms  max {ms(lat[-1]) if lat else 'nan':>8} ms  "
            f"matched {case.matched:,}  never seen {case.never_seen:,}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
