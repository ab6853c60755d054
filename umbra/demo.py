"""`make demo`: shadow links between two clusters of three brokers, a broker lost, a failover, and a consumer
group that carries on at the shadow at the offsets it committed at the source. About a minute, then it stops.

1. Start one etcd and two clusters on it (umbra/devcluster.py, as `umbra dev cluster` does): a *source* and a
   *shadow*, three brokers each, on free loopback ports in a temporary directory, on embedded defaults except
   ``default_replication_factor: 3`` on the shadow (so shadow topics survive the loss of a broker).
2. Create topic ``orders`` (6 partitions, replication factor 3) on the source. A producer writes to it at a
   steady rate until the source is lost, and consumer group ``billing`` reads it, slower, committing as it goes.
3. Create a shadow link with ``umbra shadow create``; show ``umbra shadow status``: each of the three shadow
   brokers runs the replication tasks of the partitions it leads.
4. ``kill -9`` one shadow broker (by the pid the demo started it with). Its partitions get new leaders once its
   etcd session expires, replication continues there, and the lag falls back; status again.
5. The source is lost: the producer and the group stop, the link catches up and copies the group's offsets,
   the source brokers are killed, and ``umbra shadow failover dr --all --wait`` fails the shadow over.
6. The group resumes on the shadow at its committed offsets. The demo checks that what the group read on
   both clusters is exactly what the producer had acknowledged: nothing lost, nothing read twice. A new
   record on the shadow lands at the next offset.

The clients are in umbra/demo_clients.py. Every process is stopped by pid at the end, also on failure, Ctrl-C
or SIGTERM. Exit status 0 means every check passed.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from umbra.demo_clients import (
    GROUP,
    PARTITIONS,
    TOPIC,
    BillingService,
    DemoError,
    LiveProducer,
    Offsets,
    check_exactly_once,
    committed_offsets,
    create_topic,
    produce_one,
    replica_sets,
    resume_group,
    wait_for,
)
from umbra.devcluster import ClusterBroker, DevCluster, DevClusterError, EtcdServer

LINK = "dr"
PRODUCE_RATE = 1000  # records/s, until the source is lost
CONSUME_RATE = 400  # slower than the producer: the group has a backlog to resume on the shadow
SHADOW_SETTINGS = ["--set", "default_replication_factor=3"]
OFFSET_INVALID = -1001  # librdkafka's committed offset where there is none


@dataclass
class Started:
    """What the demo started, so that it stops all of it whatever happens: processes (by pid) and clients."""

    processes: list[EtcdServer | ClusterBroker] = field(default_factory=list)
    clients: list[LiveProducer | BillingService] = field(default_factory=list)


# --- output ------------------------------------------------------------------------------------------

_step = 0
_started = time.monotonic()


def step(title: str) -> None:
    global _step
    _step += 1
    print(f"\n== {_step}. {title}   [{time.monotonic() - _started:.0f}s]", flush=True)


def say(text: str) -> None:
    print(f"   {text}", flush=True)


# --- the CLI and the admin API, as an operator uses them ---------------------------------------------------


def umbra_cli(admin_url: str, *args: str) -> None:
    """Run `umbra ARGS[0] --admin-url URL ARGS[1:]` in this process, print its output, fail if it fails."""
    from umbra.cli.main import main as umbra_main

    command, rest = args[0], list(args[1:])
    print(f"   $ umbra {command} --admin-url {admin_url} {' '.join(rest)}", flush=True)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = umbra_main([command, "--admin-url", admin_url, *rest])
    for line in output.getvalue().rstrip("\n").split("\n"):
        say("  " + line.split("\r")[-1])  # a progress line rewritten in place with \r: its final state
    if code != 0:
        raise DemoError(f"`umbra {' '.join(args)}` exited with status {code}")


def admin_url(cluster: DevCluster) -> str:
    """Any running broker's admin API answers for the whole cluster (it asks the others, or the controller)."""
    return next(b.admin_url for b in cluster.brokers if b.running())


def link_status(shadow: DevCluster) -> dict[str, Any]:
    with urllib.request.urlopen(f"{admin_url(shadow)}/v1/shadow-links/{LINK}/status", timeout=15) as response:
        return dict(json.loads(response.read()))


def partitions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["partitions"] if p["topic"] == TOPIC]


def by_broker(doc: dict[str, Any]) -> dict[int, list[int]]:
    """The shadow partitions grouped by the broker that leads, and so replicates, them (-1: no leader)."""
    found: dict[int, list[int]] = {}
    for p in partitions(doc):
        found.setdefault(p["broker"] if p["broker"] is not None else -1, []).append(p["partition"])
    return dict(sorted(found.items()))


def summary(doc: dict[str, Any], since: float, down: int | None = None) -> str:
    """One line of the link's status: records on the shadow, lag, and which shadow broker replicates what."""
    shadow = sum(max(p["shadow_high_watermark"], 0) for p in partitions(doc))
    unknown = [p["partition"] for p in partitions(doc) if p["lag"] is None]
    lag = f"{doc['total_lag']:>6,}" + (f" + unknown on {unknown}" if unknown else "")
    leaders = "  ".join(f"{b}{'(down)' if b == down else ''}:{ps}" for b, ps in by_broker(doc).items())
    return f"+{time.monotonic() - since:4.1f}s  shadow has {shadow:>6,} records, lag {lag}  | leaders {leaders}"


def watch(shadow: DevCluster, until: Callable[[dict[str, Any]], bool], what: str, timeout: float,
          down: int | None = None) -> dict[str, Any]:
    """Print a status line every second, and the last one, until ``until(status)``; returns that status."""
    since = time.monotonic()
    last = 0.0

    def check() -> dict[str, Any] | None:
        nonlocal last
        doc = link_status(shadow)
        done = until(doc)
        if done or time.monotonic() - last >= 1:
            last = time.monotonic()
            say(summary(doc, since, down))
        return doc if done else None

    return wait_for(what, check, timeout, interval=0.25)


# --- the story, a function per step ------------------------------------------------------------------------


def start_clusters(work_dir: Path, started: Started) -> tuple[DevCluster, DevCluster]:
    step("Start one etcd and two clusters of three brokers on it: a source and a shadow")
    say("(umbra/devcluster.py, as `umbra dev cluster` does: free loopback ports, a temporary directory)")
    etcd = EtcdServer(work_dir / "etcd")
    started.processes.append(etcd)
    etcd.start()
    say(f"etcd {etcd.url}, pid {etcd.pid}: one control plane, each cluster's keys under its cluster id")
    source = DevCluster(work_dir / "source", 3, etcd=etcd.url, cluster_id="source", name="source")
    shadow = DevCluster(work_dir / "shadow", 3, etcd=etcd.url, cluster_id="shadow", name="shadow",
                        extra=SHADOW_SETTINGS)
    for cluster in (source, shadow):
        started.processes += cluster.brokers
        cluster.start()
        controller = cluster.wait_ready()  # every broker sees all three: new topics get all three
        for b in cluster.brokers:
            say(f"{cluster.cluster_id} broker {b.node_id}: kafka {b.bootstrap}, admin {b.admin_url}, pid {b.pid}"
                f"{'  (controller)' if b.node_id == controller else ''}")
    say(f"the shadow brokers run with {' '.join(SHADOW_SETTINGS)}: shadow topics get three replicas too")
    return source, shadow


def start_clients(source: DevCluster, started: Started) -> tuple[LiveProducer, BillingService]:
    step("A topic, a producer and a consumer group on the source")
    create_topic(source.bootstrap_servers, replication_factor=3)

    def in_sync() -> dict[int, int] | None:
        found = replica_sets(source.bootstrap_servers)
        ok = len(found) == PARTITIONS and all(len(isr) == 3 for _, _, isr in found.values())
        return {p: leader for p, (leader, _, _) in found.items()} if ok else None

    leaders = wait_for(f"{TOPIC}: {PARTITIONS} partitions with three in-sync replicas", in_sync, timeout=60)
    say(f"created {TOPIC!r}: {PARTITIONS} partitions, three replicas each, leaders {leaders}")
    producer = LiveProducer(source.bootstrap_servers, PRODUCE_RATE)
    billing = BillingService(source.bootstrap_servers, CONSUME_RATE)
    started.clients += [producer, billing]
    producer.start()
    billing.start()
    say(f"a producer writes {PRODUCE_RATE:,} records/s (acks=all, idempotent) until the source is lost")
    say(f"group {GROUP!r} reads {CONSUME_RATE:,} records/s and commits after every batch: it falls behind, so that "
        "it has records left to read after the failover")
    wait_for("the producer's first acknowledged records", lambda: producer.acked or producer.failures, timeout=60)
    return producer, billing


def create_link(work_dir: Path, source: DevCluster, shadow: DevCluster) -> None:
    step("Create the shadow link on the shadow cluster: it catches up, then replicates live")
    spec = (f"name: {LINK}\n"
            f"source:\n"
            f"  bootstrap_servers: [{', '.join(b.bootstrap for b in source.brokers)}]\n"
            f"topics:\n"
            f"  sync_interval: 1s\n"
            f"  filters:\n"
            f'    - {{include: prefix, name: "{TOPIC}"}}\n'
            f"  start_at: earliest\n"
            f"consumer_offsets: {{enabled: true, interval: 1s}}\n")
    spec_path = work_dir / "dr.yaml"
    spec_path.write_text(spec)
    say(f"{spec_path.name}:")
    for line in spec.splitlines():
        say(f"    {line}")
    umbra_cli(admin_url(shadow), "shadow", "create", "--config", str(spec_path))
    say("status every second: lag, the records on the source not yet on the shadow; leaders, which shadow broker "
        "leads, and so replicates, which partitions")

    def on_every_broker(doc: dict[str, Any]) -> bool:
        fetchers = {t["broker"] for t in doc["tasks"] if t["task"].startswith("fetch-from-source-broker-")}
        return (len(partitions(doc)) == PARTITIONS and fetchers == {1, 2, 3} and set(by_broker(doc)) == {1, 2, 3}
                and all(p["state"] == "ACTIVE" and p["lag"] is not None for p in partitions(doc))
                and doc["total_lag"] <= PRODUCE_RATE // 2)

    watch(shadow, on_every_broker, "replication tasks on all three shadow brokers, caught up", timeout=90)
    umbra_cli(admin_url(shadow), "shadow", "status", LINK)
    offset, error = produce_one(shadow.live_bootstrap_servers, b"written to the shadow before failover", 0)
    if error is None:
        raise DemoError(f"the shadow topic took a write before failover (offset {offset}): it must be read-only")
    say(f"shadow topics are read-only until failover: producing to one fails with {error!r}")


def kill_shadow_broker(shadow: DevCluster) -> int:
    step("Kill -9 a shadow broker: its partitions move, replication continues, the lag falls back")

    def three_in_sync() -> bool:
        found = replica_sets(shadow.live_bootstrap_servers)
        if any(len(replicas) != 3 for _, replicas, _ in found.values()):
            raise DemoError(f"shadow partitions without three replicas (leader, replicas, ISR): {found}")
        return len(found) == PARTITIONS and all(len(isr) == 3 for _, _, isr in found.values())

    wait_for("every shadow partition with three in-sync replicas", three_in_sync, timeout=60)
    say("every shadow partition has three replicas, all in sync: losing a broker loses nothing")
    controller = shadow.wait_ready()
    led = by_broker(link_status(shadow))
    victim = shadow.broker(max(b for b in led if b != controller))
    moving = led[victim.node_id]
    say(f"broker {victim.node_id} leads and replicates partitions {moving}; it is not the controller (broker "
        f"{controller}), which runs the link's topic and ACL syncers")
    say(f"$ kill -9 {victim.pid}   # shadow broker {victim.node_id}")
    victim.kill()
    say(f"the source keeps taking writes. Partitions {moving} stand still until broker {victim.node_id}'s etcd "
        "session expires (broker_session_timeout_ms, 9 s) and the controller makes in-sync replicas their leaders, "
        "which replicate on from where the shadow log ends")
    say(f"a shadow partition's high watermark advances once all its in-sync replicas have the records, so the "
        f"partitions broker {victim.node_id} followed wait too, until its session expires and their leaders drop "
        "it from their ISR; then they catch up at once")
    peak = 0
    moved = False

    def moved_and_caught_up(doc: dict[str, Any]) -> bool:
        nonlocal peak, moved
        peak = max(peak, doc["total_lag"])
        if not moved and victim.node_id not in by_broker(doc) and -1 not in by_broker(doc):
            moved = True
            say(f"partitions {moving} have new leaders: {by_broker(doc)}")
        return (moved and all(p["state"] == "ACTIVE" and p["lag"] is not None for p in partitions(doc))
                and doc["total_lag"] <= PRODUCE_RATE // 2 and peak > doc["total_lag"])

    after = watch(shadow, moved_and_caught_up, f"broker {victim.node_id}'s partitions led elsewhere, lag falling",
                  timeout=120, down=victim.node_id)
    say(f"the lag peaked at {peak:,} records and is {after['total_lag']:,} now. The cluster and the link:")
    umbra_cli(admin_url(shadow), "cluster", "status")
    umbra_cli(admin_url(shadow), "shadow", "status", LINK)
    return victim.node_id


def fail_over(source: DevCluster, shadow: DevCluster, producer: LiveProducer, billing: BillingService,
              lost: int) -> Offsets:
    """Returns each partition's end offset: the records the producer had acknowledged."""
    step("Disaster: the source is lost. Fail the shadow over")
    producer.stop()
    billing.stop()
    if producer.failures or billing.failures:
        raise DemoError(f"a client failed: {(producer.failures + billing.failures)[0]}")
    end: Offsets = {p: sum(1 for q, _ in producer.acked if q == p) for p in range(PARTITIONS)}
    if set(producer.acked) != {(p, o) for p in end for o in range(end[p])}:
        raise DemoError("the producer's acknowledged offsets are not contiguous from 0 on every partition")
    say(f"the producer stopped: {len(producer.acked):,} records, every one acknowledged; partitions end at {end}")
    say(f"group {GROUP!r} stopped: read {len(billing.read):,} records, committed {billing.committed}")
    say("so that nothing is lost, wait until the link has copied every record and the group's offsets (lag 0); in "
        "a real disaster, what is still in the lag is lost")
    group_offsets = {p: billing.committed.get(p, OFFSET_INVALID) for p in range(PARTITIONS)}

    def copied() -> bool:
        marks = {p["partition"]: p["shadow_high_watermark"] for p in partitions(link_status(shadow))}
        return marks == end and committed_offsets(shadow.live_bootstrap_servers) == group_offsets

    wait_for("the shadow to have every record and the group's committed offsets", copied, timeout=90, interval=0.5)
    say(f"the shadow has them: partitions end at {end}, group {GROUP!r} committed {billing.committed}")
    for b in source.brokers:
        say(f"$ kill -9 {b.pid}   # source broker {b.node_id}")
        b.kill()
    umbra_cli(admin_url(shadow), "shadow", "failover", LINK, "--all", "--wait", "--timeout", "90")
    doc = link_status(shadow)
    if {t["topic"]: t["state"] for t in doc["topics"]}.get(TOPIC) != "FAILED_OVER":
        raise DemoError(f"{TOPIC} is not FAILED_OVER after failover: {doc['topics']}")
    if not all(p["writable"] and p["broker"] != lost for p in partitions(doc)):
        raise DemoError(f"not every partition is writable on a live leader: {partitions(doc)}")
    say(f"{TOPIC} is FAILED_OVER: an ordinary topic, writable on its leaders, brokers {sorted(by_broker(doc))}")
    return end


def resume_on_shadow(shadow: DevCluster, producer: LiveProducer, billing: BillingService, end: Offsets) -> None:
    step(f"Group {GROUP!r} resumes on the shadow at its committed offsets")
    committed = committed_offsets(shadow.live_bootstrap_servers)
    start = {p: max(committed[p], 0) for p in range(PARTITIONS)}
    read = resume_group(shadow.live_bootstrap_servers, start, end, timeout=90)
    first = {p: min((o for q, o, _ in read if q == p), default=end[p]) for p in range(PARTITIONS)}
    say(f"committed on the shadow: {committed}")
    say(f"first offsets read:      {first}")
    if first != start:
        raise DemoError(f"the group did not resume at its committed offsets: read from {first}, committed {start}")
    say(f"read the remaining {len(read):,} records on the shadow")
    check_exactly_once(producer.acked, billing.read, read)
    say(f"{len(billing.read):,} read on the source + {len(read):,} on the shadow = {len(producer.acked):,} "
        "acknowledged, each read once, with its value: nothing lost, nothing read twice")
    offset, error = produce_one(shadow.live_bootstrap_servers, b"a new order, after failover", 0)
    if offset != end[0]:
        raise DemoError(f"a new record on the shadow got offset {offset} ({error}), expected {end[0]}")
    say(f"a new record on the shadow got offset {offset} in {TOPIC}-0, right after the source's last one")


def run(work_dir: Path, started: Started) -> None:
    source, shadow = start_clusters(work_dir, started)
    producer, billing = start_clients(source, started)
    create_link(work_dir, source, shadow)
    lost = kill_shadow_broker(shadow)
    end = fail_over(source, shadow, producer, billing, lost)
    resume_on_shadow(shadow, producer, billing, end)


# --- start and stop ---------------------------------------------------------------------------------------


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    print("umbra demo: shadow links between two clusters, a broker lost, failover, a consumer group resuming")
    signal.signal(signal.SIGTERM, _interrupted)  # stopped by SIGTERM as by Ctrl-C: what it started stops too
    started = Started()
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="umbra-demo-") as temp:
        try:
            run(Path(temp), started)
        except (DemoError, DevClusterError) as exc:
            failure = str(exc)
        except KeyboardInterrupt:
            failure = "interrupted"
        except Exception as exc:  # any other failure is a failed demo too, with its cause
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            stop_everything(started, show_logs=failure not in (None, "interrupted"))
    if failure is not None:
        print(f"\numbra demo: FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"\numbra demo: done in {time.monotonic() - _started:.0f}s, every check passed")
    return 0


def stop_everything(started: Started, show_logs: bool) -> None:
    """The clients, then every process the demo started, by pid, etcd last; their logs' tails after a failure."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave processes behind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for client in started.clients:
        client.stopping.set()
    for client in started.clients:
        if client.is_alive():
            client.join(10)
    step("Stop every process the demo started (SIGTERM by pid; the ones it killed are gone already)")
    for process in reversed(started.processes):
        if process.pid is None:
            continue  # never started
        if show_logs:
            print(f"--- last lines of {process.name}'s log ({process.log_path}) ---\n{process.log_tail()}",
                  file=sys.stderr)
        was_running = process.running()
        code = process.stop()
        ended = f"by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        say(f"{process.name} (pid {process.pid}): {'stopped' if was_running else 'had ended'}, {ended}")


if __name__ == "__main__":
    raise SystemExit(main())
