"""Shadow-link catch-up with 1, 2 and 3 shadow brokers: does replication scale out over the brokers?

    .venv/bin/python benchmarks/replication_scaling.py             # 1 GiB of 100-byte and 1 GiB of 10-KiB records
    .venv/bin/python benchmarks/replication_scaling.py --mb 64     # a quick run

It starts one etcd (umbra/devcluster.py) and a source cluster of three `umbra broker` processes on it (cluster
id `src`, tests/harness.py: free loopback ports, a temporary directory), creates one topic per record size
(`--partitions`, default 12, replication factor 1) and loads each once with confluent-kafka (acks=all,
idempotent, random values, partitions round robin): `--mb` MiB of 100-byte values and `--mb` MiB of 10-KiB ones.

Then, per record size and shadow size N in 1, 2, 3, it starts a fresh shadow cluster of N brokers on the same
etcd (a new cluster id each time: `dr2-100-1` is N=2, 100-byte records, run 1), waits until every broker sees
all N alive, a controller and the offsets topic, and creates a link for that one topic with POST
/v1/shadow-links (every source broker in `bootstrap_servers`, spec-default fetch settings, consumer-offset and
ACL sync off). The shadow clusters have `default_replication_factor: 1`: each shadow partition has one replica,
whose leader fetches it from the source, so what is measured is replication from the source, with no ISR
traffic inside the shadow cluster. The controller spreads the partitions round robin over the N live brokers;
the status names each partition's `broker`, and the report prints the count per broker (a run whose
partitions did not reach all N brokers is marked, and the exit status is 1).

The start is gated. The controller creates the shadow topic during the POST and starts its own replicators at
once; the other brokers start theirs when they next poll etcd, up to `broker_session_timeout_ms` / 3 = 3 s later.
Timed from the POST, a 1 GiB catch-up on 2 or 3 brokers would mostly time that poll. So the source brokers are
frozen (SIGSTOP, by pid) as soon as the POST is answered (sent to the controller, which answers first), until
status shows every partition's replicator on its broker; then they are let go (SIGCONT), and the catch-up is
timed from there until GET /v1/shadow-links/NAME/status shows every partition at lag 0 with the shadow high
watermark equal to the source's end offset. "setup s" is the time from the POST until every replicator ran.
The source brokers get a 30 s etcd session so that the freeze (at most 12 s) never costs them their lease.
Data a broker copied before the freeze is left out of its figures; a run where some broker copied more than
5 % of its share before the freeze is run again (at most 3 attempts).

Each broker is one Python process: about one core at most (the GIL; its writer thread's writes run outside it,
so a busy broker shows 100-110 %). Each shadow broker's CPU seconds over the catch-up are
read from /proc/PID/stat, and divided by the GiB of record values that broker replicated (its partitions'
records times the record size): "CPU s/GiB". 1024 / that is the MB/s one broker would reach with a core to
itself ("MB/s a core"). Also printed: the three source brokers' CPU per GiB, and how busy the machine's cores
were (from /proc/stat; steal is time the hypervisor gave to others).

Each case runs `--repeats` times (default 3, the order of N rotating between runs) and the fastest run counts;
every run's MB/s is printed. Speed-up = MB/s with N brokers / MB/s with 1, in this one run: this machine is
shared, so absolute times are noise and only ratios mean something. Right before the source is let go, a
scratch file of the topic's log size is written and deleted (`--cold` skips it), so that every case writes
into recently freed page-cache pages (benchmarks/copylimit.py explains why this matters on this VM). After
each case the shadow cluster is stopped and its data deleted.

MB = MiB of record values (keys and batch overhead not counted). Every process this starts (etcd, brokers) is
stopped by pid at the end, also on error, Ctrl-C or SIGTERM. Needs `etcd` (`make install`). Not part of
`make test`.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from copylimit import page_cache_write_rates, warm_page_cache  # noqa: E402
from harness import BrokerProcess, create_topic, stop_all, wait_until  # noqa: E402
from link_api import admin_call  # noqa: E402
from loading import MIB, produce_values  # noqa: E402

from umbra.devcluster import EtcdServer  # noqa: E402

GIB = 1024 * MIB
SIZES = (100, 10 * 1024)
SHADOW_SIZES = (1, 2, 3)
SOURCE_BROKERS = 3
# The source is frozen (SIGSTOP) while the shadow sets up, up to GATE_SECONDS: a long etcd session keeps it alive.
SOURCE_CONFIG = {"log_level": "WARNING", "broker_session_timeout_ms": 30_000}
GATE_SECONDS = 12.0
POLL_SECONDS = 0.05  # status polls; a call takes longer while the shadow is busy, which is the timing's resolution
LEAK_LIMIT = 0.05  # a run where a broker copied more of its share than this before the gate opened is run again
ATTEMPTS = 3
# One replica per shadow partition: the figures are replication from the source, not ISR traffic. The offsets
# topic with one replica too, created at once, so that no topic is created in the middle of a measurement.
SHADOW_CONFIG = {"log_level": "WARNING", "default_replication_factor": 1, "offsets_topic_replication_factor": 1}


# --- CPU accounting --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all cores since boot, from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return user + nice + system + irq + softirq, steal, user + nice + system + idle + iowait + irq + softirq + steal


# --- clusters --------------------------------------------------------------------------------------


def start_cluster(work: Path, etcd: EtcdServer, cluster_id: str, size: int, config: dict[str, Any],
                  started: list[BrokerProcess]) -> list[BrokerProcess]:
    """``size`` brokers of ``cluster_id`` on ``etcd``, returned once every one sees them all alive, a controller,
    and the cluster's offsets topic (so that nothing is created later, during a measurement)."""
    brokers = []
    for node_id in range(1, size + 1):
        broker = BrokerProcess(work / cluster_id / f"broker-{node_id}", name=f"{cluster_id}-{node_id}",
                               node_id=node_id, config=config,
                               extra_args=["--etcd", etcd.url, "--cluster-id", cluster_id])
        started.append(broker)
        brokers.append(broker.start(timeout=60))
    ids = set(range(1, size + 1))

    def ready() -> bool:
        for broker in brokers:
            status, doc = admin_call(broker, "GET", "/v1/cluster")
            alive = {b["node_id"] for b in doc["brokers"] if b["alive"]} if status == 200 else set()
            if alive != ids or doc["controller"] not in ids or doc["partitions"]["total"] < 1:
                return False
        return True

    wait_until(ready, timeout=60, interval=0.1, retry_on=(OSError,),
               message=f"{cluster_id}: {size} live brokers, a controller and the offsets topic, seen by every broker")
    return brokers


def stop_cluster(brokers: list[BrokerProcess], started: list[BrokerProcess]) -> None:
    """Stop the brokers together (each by pid: SIGTERM, SIGKILL after 20 s), then delete their data."""
    with ThreadPoolExecutor(max_workers=len(brokers)) as pool:
        errors = [error for found in pool.map(lambda b: stop_all([b]), brokers) for error in found]
    for broker in brokers:
        started.remove(broker)
        shutil.rmtree(broker.data_dir, ignore_errors=True)  # the log stays, beside it, until the end
    if errors:
        raise RuntimeError(f"stopping {[b.name for b in brokers]}: {errors}")


def bootstrap(brokers: list[BrokerProcess]) -> str:
    return ",".join(b.bootstrap for b in brokers)


def controller(brokers: list[BrokerProcess]) -> BrokerProcess:
    code, doc = admin_call(brokers[0], "GET", "/v1/cluster")
    found = [b for b in brokers if code == 200 and b.node_id == doc["controller"]]
    if not found:
        raise RuntimeError(f"no controller among {[b.name for b in brokers]}: {doc}")
    return found[0]


# --- loading the source -----------------------------------------------------------------------------


@dataclass
class Loaded:
    topic: str
    record_size: int
    end_offsets: list[int]
    log_bytes: int
    seconds: float

    @property
    def records(self) -> int:
        return sum(self.end_offsets)

    @property
    def value_bytes(self) -> int:
        return self.records * self.record_size


def load(source: list[BrokerProcess], topic: str, record_size: int, total_bytes: int, partitions: int) -> Loaded:
    create_topic(bootstrap(source), topic, partitions=partitions, replication_factor=1, timeout=60)
    admin = AdminClient({"bootstrap.servers": bootstrap(source)})

    def leader_counts() -> Counter[int] | None:  # the broker asked may learn of the topic after the others
        found = admin.list_topics(topic=topic, timeout=10).topics[topic].partitions.values()
        return Counter(p.leader for p in found) if len(found) == partitions else None

    leaders = wait_until(leader_counts, timeout=30, message=f"{topic}'s {partitions} partitions in the metadata")
    print(f"  {topic}: source partition leaders per broker {dict(sorted(leaders.items()))}", flush=True)
    records = max(1, total_bytes // record_size)
    config = {"acks": "all", "enable.idempotence": True, "linger.ms": 10, "batch.size": MIB,
              "queue.buffering.max.kbytes": 256 * 1024, "queue.buffering.max.messages": 2_000_000}
    seconds = produce_values(bootstrap(source), topic, partitions, record_size, records, config, timeout=1800)
    consumer = Consumer({"bootstrap.servers": bootstrap(source), "group.id": "bench-watermarks"})
    try:
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)]
    finally:
        consumer.close()
    if sum(ends) != records:
        raise RuntimeError(f"loading {topic}: the source holds {sum(ends)} records, not {records}")
    log_bytes = sum(f.stat().st_size for b in source for d in b.data_dir.glob(f"{topic}-*") for f in d.glob("*.log"))
    return Loaded(topic, record_size, ends, log_bytes, seconds)


# --- one catch-up -----------------------------------------------------------------------------------


@dataclass
class BrokerShare:
    partitions: int
    value_bytes: int  # replicated after the gate opened
    cpu_seconds: float

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_seconds / (self.value_bytes / GIB) if self.value_bytes else float("nan")


@dataclass
class Run:
    brokers: int
    loaded: Loaded
    setup_seconds: float  # from the POST until every partition's replicator was running on its broker
    ready_at_gate: int  # partitions whose replicator was running when the gate opened (all, unless it timed out)
    leaked: float  # the largest share of a broker's partitions' data copied before the gate opened
    seconds: float  # from the gate opening until caught up
    flowing_after: float  # from the gate opening until status showed data arriving on every partition
    flowing_bytes: int  # values copied by then
    shares: dict[int, BrokerShare]  # by shadow node id
    source_cpu_seconds: float
    busy: float  # of all the machine's cores, over the catch-up
    steal: float
    other_cpu_seconds: float  # busy CPU time of the machine not used by the shadow or source brokers
    status_calls: int
    status_seconds: float
    not_found: int

    @property
    def value_bytes(self) -> int:
        return sum(s.value_bytes for s in self.shares.values())

    @property
    def mb_per_second(self) -> float:
        return self.value_bytes / MIB / self.seconds

    @property
    def copy_mb_per_second(self) -> float:
        """From when data had arrived on every partition: the start (until the last one's first batch) left out."""
        if self.seconds - self.flowing_after < 2 * POLL_SECONDS:
            return float("nan")
        return (self.value_bytes - self.flowing_bytes) / MIB / (self.seconds - self.flowing_after)

    @property
    def spread(self) -> bool:
        return set(self.shares) == set(range(1, self.brokers + 1)) and all(
            s.partitions for s in self.shares.values())

    @property
    def cpu_per_gib(self) -> float:
        """Mean over the brokers that replicated something."""
        values = [s.cpu_per_gib for s in self.shares.values() if s.value_bytes]
        return sum(values) / len(values)


class LinkStatus:
    """GET /v1/shadow-links/NAME/status on one broker, timed. A broker that forwarded the POST to the
    controller answers 404 until it has read the new link from etcd: 404s before the first 200 mean "not yet"."""

    def __init__(self, broker: BrokerProcess, name: str) -> None:
        self.broker = broker
        self.name = name
        self.calls: list[float] = []
        self.not_found = 0

    def __call__(self) -> dict[tuple[str, int], dict[str, Any]] | None:
        called = time.perf_counter()
        code, doc = admin_call(self.broker, "GET", f"/v1/shadow-links/{self.name}/status")
        self.calls.append(time.perf_counter() - called)
        if code == 404 and len(self.calls) == self.not_found + 1:
            self.not_found += 1
            return None
        if code != 200:
            raise RuntimeError(f"status of {self.name} from {self.broker.name}: HTTP {code}: {doc}")
        return {(p["topic"], p["partition"]): p for p in doc["partitions"]}

    @staticmethod
    def pause() -> None:
        time.sleep(POLL_SECONDS)


def signal_all(brokers: list[BrokerProcess], signum: int) -> None:
    for broker in brokers:
        os.kill(broker.pid, signum)


def catch_up(source: list[BrokerProcess], shadow: list[BrokerProcess], loaded: Loaded, timeout: float,
             before_release: Callable[[], None]) -> Run:
    """Create the link with the source frozen (SIGSTOP) from the moment the POST is answered, until every
    shadow partition's replicator runs on its broker; then call ``before_release``, let the source go
    (SIGCONT) and time the copy."""
    name = f"scaling-{loaded.record_size}"
    spec = {
        "name": name,
        "source": {"bootstrap_servers": [b.bootstrap for b in source]},
        "topics": {"filters": [{"include": "literal", "name": loaded.topic}], "sync_interval": "5s"},
        "consumer_offsets": {"enabled": False},
        "acls": {"enabled": False},
    }
    expected = {(loaded.topic, p): end for p, end in enumerate(loaded.end_offsets)}
    # Asked of the controller: a broker that forwards the POST there answers later, when the controller's
    # replicators may have started copying.
    status = LinkStatus(controller(shadow), name)
    started = time.perf_counter()
    code, body = admin_call(status.broker, "POST", "/v1/shadow-links", spec)
    if code != 201:
        raise RuntimeError(f"creating link {name}: HTTP {code}: {body}")
    # The POST answers once the shadow topic is in etcd; the controller's replicators start a moment later.
    signal_all(source, signal.SIGSTOP)
    try:
        gate_deadline = time.monotonic() + GATE_SECONDS
        while True:
            partitions = status()
            # A replicator's entry has a leader epoch; an idle one (no replicator there yet) has none.
            ready = sum(1 for tp in expected if partitions and tp in partitions
                        and partitions[tp]["leader_epoch"] is not None)
            if ready == len(expected) or time.monotonic() > gate_deadline:
                break
            status.pause()
        setup_seconds = time.perf_counter() - started
        at_gate = {tp: max(partitions[tp]["shadow_high_watermark"], 0) if partitions and tp in partitions else 0
                   for tp in expected}  # 0 unless the gate leaked
        before_release()
        shadow_cpu = {b.node_id: cpu_seconds(b.pid) for b in shadow}
        source_cpu = sum(cpu_seconds(b.pid) for b in source)
        jiffies = machine_jiffies()
        opened = time.perf_counter()
    finally:
        signal_all(source, signal.SIGCONT)

    flowing_after: float | None = None
    flowing_records = 0

    def caught_up() -> dict[tuple[str, int], dict[str, Any]] | None:
        nonlocal flowing_after, flowing_records
        partitions = status()
        if flowing_after is None and partitions is not None and all(
                tp in partitions and partitions[tp]["shadow_high_watermark"] > at_gate[tp] for tp in expected):
            flowing_after = time.perf_counter() - opened
            flowing_records = sum(partitions[tp]["shadow_high_watermark"] - at_gate[tp] for tp in expected)
        return partitions if partitions is not None and all(
            (p := partitions.get(tp)) is not None and p["lag"] == 0
            and p["source_high_watermark"] == p["shadow_high_watermark"] == end for tp, end in expected.items()
        ) else None

    deadline = time.monotonic() + timeout
    while (final := caught_up()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"link {name} not caught up after {timeout:.0f} s: {str(status())[:3000]}")
        status.pause()
    seconds = time.perf_counter() - opened
    if flowing_after is None:
        flowing_after, flowing_records = seconds, sum(end - at_gate[tp] for tp, end in expected.items())
    jiffies_after = machine_jiffies()
    used = {b.node_id: cpu_seconds(b.pid) - shadow_cpu[b.node_id] for b in shadow}
    source_used = sum(cpu_seconds(b.pid) for b in source) - source_cpu
    total = jiffies_after[2] - jiffies[2]

    counts: Counter[int] = Counter()
    value_bytes: Counter[int] = Counter()
    before_gate: Counter[int] = Counter()
    for tp, end in expected.items():
        broker = final[tp]["broker"]
        counts[broker] += 1
        value_bytes[broker] += (end - at_gate[tp]) * loaded.record_size
        before_gate[broker] += at_gate[tp] * loaded.record_size
    leaked = max(before_gate[b] / (before_gate[b] + value_bytes[b]) for b in counts)
    shares = {node: BrokerShare(counts[node], value_bytes[node], used.get(node, 0.0)) for node in counts}
    for node, cpu in used.items():  # a broker that replicated nothing still shows its CPU
        shares.setdefault(node, BrokerShare(0, 0, cpu))
    busy = jiffies_after[0] - jiffies[0]
    other = busy / os.sysconf("SC_CLK_TCK") - sum(used.values()) - source_used
    return Run(len(shadow), loaded, setup_seconds, ready, leaked, seconds, flowing_after,
               flowing_records * loaded.record_size, dict(sorted(shares.items())), source_used, busy / total,
               (jiffies_after[1] - jiffies[1]) / total, other, len(status.calls), sum(status.calls), status.not_found)


# --- report ------------------------------------------------------------------------------------------


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def number(value: float, spec: str) -> str:
    """``value`` formatted, or "-" where it could not be measured (a copy faster than the status polls)."""
    return "-" if math.isnan(value) else format(value, spec)


def print_report(best: dict[tuple[int, int], Run], runs: dict[tuple[int, int], list[Run]]) -> None:
    print("\nshadow clusters: default_replication_factor 1, so every byte is replicated from the source once, by the"
          "\nbroker leading its partition (no ISR traffic in the shadow cluster). Timed from the moment the source was"
          "\nlet go, with every replicator running; the fastest of each case's runs.\n")
    for size in SIZES:
        one = best[(size, 1)]
        loaded = one.loaded
        print(f"{size_label(size)} records: {loaded.records:,} records, {loaded.value_bytes / MIB:,.0f} MiB of values, "
              f"{len(loaded.end_offsets)} partitions, source log {loaded.log_bytes / MIB:,.0f} MiB")
        print(f"  {'N':>2} {'MB/s':>7} {'s':>6} {'speed-up':>9}  {'every run (MB/s)':<20}{'copy MB/s':>10}"
              f"{'speed-up':>9}{'setup s':>9}{'busy':>6}{'steal':>6}{'other':>6}{'source':>7}")
        for n in SHADOW_SIZES:
            run = best[(size, n)]
            every = ", ".join(f"{r.mb_per_second:,.0f}" for r in runs[(size, n)])
            setups = "-".join(f"{f(r.setup_seconds for r in runs[(size, n)]):.1f}" for f in (min, max))
            copy_ratio = run.copy_mb_per_second / one.copy_mb_per_second
            speed_up = run.mb_per_second / one.mb_per_second
            print(f"  {n:>2} {run.mb_per_second:>7,.0f} {run.seconds:>6.2f} {speed_up:>9.2f}"
                  f"  {every:<20}{number(run.copy_mb_per_second, ',.0f'):>10}{number(copy_ratio, '.2f'):>9}"
                  f"{setups:>9}{100 * run.busy:>5.0f}%{100 * run.steal:>5.0f}%"
                  f"{100 * run.other_cpu_seconds / run.seconds:>5.0f}%"
                  f"{run.source_cpu_seconds / (run.value_bytes / GIB):>7.2f}")
        print(f"  {'N':>2}  per shadow broker: partitions, GiB replicated, CPU s, CPU s/GiB, % of a core"
              "   ->  mean CPU s/GiB, MB/s a core")
        for n in SHADOW_SIZES:
            run = best[(size, n)]
            shares = "; ".join(f"b{node} {s.partitions:>2} p {s.value_bytes / GIB:.2f} GiB {s.cpu_seconds:5.2f} s "
                               f"{s.cpu_per_gib:5.2f} s/GiB {100 * s.cpu_seconds / run.seconds:3.0f} %"
                               for node, s in run.shares.items())
            mark = "" if run.spread else f"   NOT SPREAD over all {n} brokers"
            print(f"  {n:>2}  {shares}   ->  {run.cpu_per_gib:.2f} s/GiB, {1024 / run.cpu_per_gib:,.0f}{mark}")
        ratios = [f"{n} brokers / 1 = {best[(size, n)].mb_per_second / one.mb_per_second:.2f}"
                  for n in SHADOW_SIZES[1:]]
        copy_ratios = [number(best[(size, n)].copy_mb_per_second / one.copy_mb_per_second, ".2f")
                       for n in SHADOW_SIZES[1:]]
        every_run = [r for n in SHADOW_SIZES for r in runs[(size, n)]]
        calls = sum(r.status_calls for r in every_run)
        call_ms = 1000 * sum(r.status_seconds for r in every_run) / max(calls, 1)
        notes = [f"{calls} status calls, {call_ms:.0f} ms each"]
        if early := [r for r in every_run if r.ready_at_gate < len(loaded.end_offsets)]:
            notes.append(f"{len(early)} run(s) let the source go before every replicator ran ({GATE_SECONDS:.0f} s)")
        if leaks := [r.leaked for r in every_run if r.leaked]:
            notes.append(f"{len(leaks)} run(s) copied up to {100 * max(leaks):.1f} % of a broker's share before the"
                         " source was frozen: left out of MB/s and CPU s/GiB")
        if not_found := sum(r.not_found for r in every_run):
            notes.append(f"status answered 404 {not_found}x right after the POST's 201")
        print(f"  speed-up: {', '.join(ratios)} (copy MB/s: {', '.join(copy_ratios)})")
        print(f"  {'; '.join(notes)}\n")
    print(f"""\
N = shadow brokers. MB/s = MiB of record values / seconds (s) from the source's release until every partition
was caught up; speed-up = MB/s with N brokers / MB/s with 1; copy MB/s = the same from the first status that
showed data on every partition (the start left out: until the last partition got its first batch);
setup s = from the POST until every partition's replicator ran, over the runs (brokers other than the
controller learn of a new topic when they next poll etcd). busy = all the machine's {os.cpu_count()} cores; steal = time
the hypervisor gave to other guests; other = CPU used by neither the shadow nor the source brokers (etcd, this
process, the kernel's writeback, anything else running), % of one core; source = the three source brokers'
CPU s/GiB. CPU s/GiB = a shadow broker's CPU seconds over the catch-up / GiB of values it replicated;
MB/s a core = 1024 / their mean: what one broker would replicate with a core to itself.""")


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="MiB of values per record size (default 1024)")
    parser.add_argument("--partitions", type=int, default=12, help="partitions per topic (default 12)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case; the fastest counts (default 3)")
    parser.add_argument("--timeout", type=float, default=900, help="cap in seconds on each catch-up (default 900)")
    parser.add_argument("--cold", action="store_true",
                        help="do not warm the page cache before each case (see benchmarks/copylimit.py)")
    return parser.parse_args(argv)


def _interrupted(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)  # stop everything by pid, as on Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where it was started with SIGINT ignored
    started: list[BrokerProcess] = []
    runs: dict[tuple[int, int], list[Run]] = {(size, n): [] for size in SIZES for n in SHADOW_SIZES}
    discarded = 0
    with tempfile.TemporaryDirectory(prefix="umbra-scaling-bench-") as temp:
        work = Path(temp)
        etcd = EtcdServer(work)
        try:
            etcd.start()
            print(f"etcd pid {etcd.pid} at {etcd.url}", flush=True)
            source = start_cluster(work, etcd, "src", SOURCE_BROKERS, SOURCE_CONFIG, started)
            print(f"source cluster src: pids {[b.pid for b in source]} at {bootstrap(source)}", flush=True)
            loaded = {}
            for size in SIZES:
                print(f"loading {args.mb} MiB of {size_label(size)} records into src ...", flush=True)
                loaded[size] = load(source, f"scaling-{size}", size, args.mb * MIB, args.partitions)
                print(f"  {loaded[size].value_bytes / MIB / loaded[size].seconds:,.0f} MB/s", flush=True)
            os.sync()
            rates = page_cache_write_rates(work, min(args.mb, 512) * MIB)
            print(f"page-cache writes: {rates[0]:,.0f} MiB/s into new pages, "
                  f"{rates[1]:,.0f} MiB/s into pages freed a moment ago", flush=True)
            for repeat in range(args.repeats):
                order = SHADOW_SIZES[repeat % 3:] + SHADOW_SIZES[:repeat % 3]  # no N always first
                for size in SIZES:
                    for n in order:
                        for attempt in range(ATTEMPTS):
                            cluster_id = f"dr{n}-{size}-{repeat + 1}" + "abcdefgh"[attempt] * (attempt > 0)
                            shadow = start_cluster(work, etcd, cluster_id, n, SHADOW_CONFIG, started)

                            def prepare(log_bytes: int = loaded[size].log_bytes) -> None:
                                os.sync()  # no dirty pages left over from what came before
                                if not args.cold:
                                    warm_page_cache(work, log_bytes)

                            try:
                                run = catch_up(source, shadow, loaded[size], args.timeout, prepare)
                            finally:
                                stop_cluster(shadow, started)
                            if run.leaked <= LEAK_LIMIT or attempt == ATTEMPTS - 1:
                                break
                            discarded += 1
                            print(f"{cluster_id}: a broker copied {100 * run.leaked:.0f} % of its data before the "
                                  "source was frozen; running it again", flush=True)
                        runs[(size, n)].append(run)
                        print(f"{cluster_id}: {n} shadow broker(s), {size_label(size)}: {run.mb_per_second:,.1f} MB/s "
                              f"in {run.seconds:.2f} s (data on every partition after {run.flowing_after:.2f} s), "
                              f"partitions per broker {[s.partitions for s in run.shares.values()]}, "
                              f"setup {run.setup_seconds:.2f} s", flush=True)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BaseException:
            for broker in started:
                print(f"--- tail of {broker.log_path} ---\n{broker.log_tail(20)}", file=sys.stderr)
            raise
        finally:
            errors = stop_all(reversed(started))
            etcd.stop()
            print(f"stopped {len(started)} broker(s) and etcd pid {etcd.pid}"
                  + (f"; errors: {errors}" if errors else ""), flush=True)
    best = {case: max(case_runs, key=lambda r: r.mb_per_second) for case, case_runs in runs.items()}
    print_report(best, runs)
    if discarded:
        print(f"{discarded} run(s) discarded and run again: the controller copied before the source was frozen")
    print(f"page cache: {'new pages (--cold)' if args.cold else 'each case starts on recently freed pages'}; "
          f"writes ran at {rates[0]:,.0f} MiB/s into new pages and {rates[1]:,.0f} MiB/s into freed ones")
    return 0 if all(r.spread for case_runs in runs.values() for r in case_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
