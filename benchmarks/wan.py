"""Cross-region: a shadow link through a delaying TCP proxy, 25 ms each way (50 ms round trip).

    .venv/bin/python benchmarks/wan.py                  # 1 GiB of 100-byte and 1 GiB of 10-KiB records, then RPO
    .venv/bin/python benchmarks/wan.py --mb 256 --rpo-seconds 10   # a quicker run

It starts a TcpProxy (tests/tcpproxy.py) in a process of its own and a source `umbra broker` (tests/harness.py)
that *advertises the proxy's address*, so that every connection a client opens to the source broker after
bootstrap, and every connection of the shadow link (whose bootstrap is the proxy too), goes through the proxy.
The proxy delays only the shadow link's connections (the client id of a connection's first request starts with
`umbra-shadow`): the producers and admin clients of this process play clients in the source's region, and only
the link crosses the WAN. The delay is per chunk, as it arrives, so the pipe stays full: a delay costs latency,
not bandwidth, as on a long link. Both cases, 0 ms and 50 ms, go through the same proxy, so the ratio compares
like with like (the proxy's own copy costs CPU on this 2-core machine, and caps the rate of both).

1. Catch-up. The source is loaded with `--mb` MiB of 100-byte values and `--mb` MiB of 10-KiB values (one topic
   each, `--partitions` partitions, confluent-kafka, acks=1). Then, per record size, `--repeats` times: a fresh
   shadow broker catches up through the proxy with a delay of 0 and a fresh one with 25 ms each way (the order
   alternates from one repeat to the next), link fetch settings at the spec's defaults. Each run is timed from
   the POST that creates the link until status shows lag 0 and the source's high watermark on every partition
   ("from POST"), and from the first data on the shadow to that point ("copy"). The ratio is MB/s at 50 ms RTT
   over MB/s at 0 ms, of the best run of each, and the median of each repeat's own ratio (the two runs of a
   repeat follow each other, so they share the machine's state of the moment: on this shared machine that
   median is the steadier figure). The copy ratio is the
   bandwidth figure; the from-POST ratio also counts the link's set-up (metadata, ListOffsets: a few round
   trips), which no amount of bytes in flight hides. Each run starts on recently freed page-cache pages
   (`--cold` skips the warm-up; see benchmarks/copylimit.py).
2. Recovery point. A fresh shadow and a `--rpo-partitions`-partition topic, the link through the 50 ms RTT proxy
   (spec defaults: fetch_max_wait_ms 500, fetch_min_bytes 1), then benchmarks/rpo.py's measurement: a paced
   producer writes `--rpo-mbps` MiB/s of 1-KiB records into the source for `--rpo-seconds`, and a consumer on the
   shadow notes when each record appears; ack -> seen is the time from the producer's delivery report to the
   record coming out of the shadow consumer, over every record; p50/p99/max are printed.

Every broker and the proxy's process are stopped by pid at the end, also on error or Ctrl-C. Not part of
`make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from copylimit import page_cache_write_rates, warm_page_cache  # noqa: E402
from harness import BrokerProcess, create_topic, stop_all, wait_until  # noqa: E402
from loading import MIB  # noqa: E402
from partitions import Loaded, load  # noqa: E402
from rpo import Case, CpuMeter, admin, link_partitions, ms, percentile  # noqa: E402
from rpo import measure as measure_rpo  # noqa: E402
from tcpproxy import CHUNK, TcpProxy  # noqa: E402

SIZES = (100, 10 * 1024)
WAN_CLIENT_PREFIX = b"umbra-shadow"  # umbra.shadow.link names its source client umbra-shadow-<link>
_REQUEST_HEAD = struct.Struct(">ihhih")  # size, api key, api version, correlation id, client id length
_MALLOC_KEEP_HEAP = {"MALLOC_TRIM_THRESHOLD_": str(1 << 31), "MALLOC_TOP_PAD_": str(256 << 20)}


class WanProxy(TcpProxy):
    """The TcpProxy, delaying only the shadow link's connections.

    A connection's first request names its client; the link's connections get the proxy's delay (and rate
    limit), every other client (this process's producers and admin clients, in the source's region) a plain copy.
    """

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.settings.cut or self.target is None:
            client_writer.transport.abort()
            return
        try:
            head = await client_reader.readexactly(_REQUEST_HEAD.size)
            client_id = await client_reader.readexactly(max(_REQUEST_HEAD.unpack(head)[4], 0))
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.IncompleteReadError):
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        wan = client_id.startswith(WAN_CLIENT_PREFIX)
        if wan and self.settings.delay_s:
            await asyncio.sleep(self.settings.delay_s)
        server_writer.write(head + client_id)
        if wan:
            pipes = self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        else:
            pipes = _copy(client_reader, server_writer), _copy(server_reader, client_writer)
        await asyncio.gather(*pipes, return_exceptions=True)
        for writer in (client_writer, server_writer):
            self._writers.discard(writer)
            writer.transport.abort()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


class ProxyProcess:
    """A WanProxy in a process of its own (the network is not this process's producer and consumer threads,
    which would hold the GIL while a chunk is due), driven over a pipe; stopped by pid."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._control, child = context.Pipe()
        self._process = context.Process(target=_serve_proxy, args=(child,), name="wan-proxy", daemon=True)
        # At 50 ms the delay line holds tens of MB of chunks; glibc would hand the freed heap back and fault it in
        # again, and on this VM new pages cost a host page fault each (benchmarks/copylimit.py): a cost of the
        # proxy that a delay on a real network does not have. The proxy keeps its heap.
        saved = {key: os.environ.get(key) for key in _MALLOC_KEEP_HEAP}
        os.environ.update(_MALLOC_KEEP_HEAP)
        try:
            self._process.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self.host, self.port = self._call("address")

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set_target(self, host: str, port: int) -> None:
        self._call("target", host, port)

    def set_delay(self, delay_s: float) -> None:
        self._call("delay", delay_s)

    def _call(self, *command: Any) -> Any:
        self._control.send(command)
        if not self._control.poll(30):
            raise TimeoutError(f"the proxy process (pid {self.pid}) did not answer {command[0]!r}")
        return self._control.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()  # SIGTERM to its pid
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(10)


def _serve_proxy(control: Connection) -> None:
    proxy = WanProxy()
    try:
        while True:
            command = control.recv()
            if command[0] == "address":
                control.send((proxy.host, proxy.port))
            elif command[0] == "target":
                proxy.target = (command[1], command[2])
                control.send(None)
            elif command[0] == "delay":
                proxy.set(delay_s=command[1])
                control.send(None)
    except EOFError:  # the benchmark went away
        pass
    finally:
        proxy.stop()


@dataclass
class CatchUp:
    delay_ms: float
    seconds: float  # from the POST
    data_after: float  # seconds from the POST to the first data on the shadow
    cpu: str
    trace: str = ""  # with --trace: when the shadow had 10/50/90 % of the records, and each partition all


    def mb_per_second(self, loaded: Loaded) -> float:
        return loaded.value_bytes / MIB / self.seconds

    def copy_mb_per_second(self, loaded: Loaded) -> float:
        return loaded.value_bytes / MIB / max(1e-9, self.seconds - self.data_after)


def wan_link_spec(name: str, proxy: ProxyProcess, topic: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"bootstrap_servers": [proxy.address]},
        "topics": {"filters": [{"include": "literal", "name": topic}], "sync_interval": "5s"},
        "consumer_offsets": {"enabled": False},
        "acls": {"enabled": False},
    }


def start_shadow(work: Path, name: str, brokers: list[BrokerProcess]) -> BrokerProcess:
    shadow = BrokerProcess(work / name, name=name, node_id=2,
                           config={"log_level": "WARNING", "auto_create_topics": False})  # fmt: skip
    brokers.append(shadow)
    shadow.start()
    print(f"  shadow broker pid {shadow.pid} at {shadow.bootstrap}", flush=True)
    return shadow


def stop_shadow(shadow: BrokerProcess, brokers: list[BrokerProcess]) -> None:
    try:
        shadow.stop()
    finally:
        brokers.remove(shadow)
        shutil.rmtree(shadow.work_dir, ignore_errors=True)


def catch_up(args: argparse.Namespace, work: Path, source: BrokerProcess, proxy: ProxyProcess, loaded: Loaded,
             delay_ms: float, run: int, brokers: list[BrokerProcess]) -> CatchUp:  # fmt: skip
    proxy.set_delay(delay_ms / 2000)
    shadow = start_shadow(work, f"shadow-{loaded.record_size}-{delay_ms:.0f}ms-{run}", brokers)
    try:
        os.sync()
        if not args.cold:
            warm_page_cache(work, loaded.value_bytes)
        name = f"wan-{loaded.record_size}"
        expected = {(loaded.topic, p): end for p, end in enumerate(loaded.end_offsets)}
        data_after: list[float] = []
        total = sum(expected.values())
        milestones: dict[int, float] = {}  # percent of the records on the shadow -> seconds from the POST
        finished: dict[int, float] = {}  # partition -> seconds from the POST when it had every record
        cpu = CpuMeter({"source": source.pid, "shadow": shadow.pid, "proxy": proxy.pid}, include_self=True)
        started = time.perf_counter()
        admin(shadow, "POST", "/v1/shadow-links", wan_link_spec(name, proxy, loaded.topic))

        def caught_up() -> bool:
            parts = link_partitions(shadow, name)
            if not data_after and any(p["shadow_high_watermark"] > 0 for p in parts.values()):
                data_after.append(time.perf_counter() - started)
            if args.trace:
                now = time.perf_counter() - started
                have = sum(min(p["shadow_high_watermark"], expected.get(tp, 0)) for tp, p in parts.items())
                for percent in (10, 50, 90):
                    if have * 100 >= percent * total:
                        milestones.setdefault(percent, now)
                for (_, partition), end in expected.items():
                    if (p := parts.get((loaded.topic, partition))) is not None and p["shadow_high_watermark"] >= end:
                        finished.setdefault(partition, now)
            return all(
                (p := parts.get(tp)) is not None
                and p["lag"] == 0
                and p["source_high_watermark"] == p["shadow_high_watermark"] == end
                for tp, end in expected.items()
            )

        wait_until(caught_up, timeout=args.timeout, interval=0.02, message=f"link {name} to catch up")
        seconds = time.perf_counter() - started
        trace = ""
        if args.trace:
            trace = (", ".join(f"{pc} % at {at:.2f} s" for pc, at in sorted(milestones.items()))
                     + "; partitions done at " + ", ".join(f"{at:.2f}" for at in sorted(finished.values()))
                     + "; " + fetch_loops(shadow, name))
        return CatchUp(delay_ms, seconds, data_after[0] if data_after else seconds, cpu.report(), trace)
    finally:
        stop_shadow(shadow, brokers)


def fetch_loops(shadow: BrokerProcess, name: str) -> str:
    """The link's fetch loops at the end of a run: sessions in flight, round trip, and any errors they met (a
    run that stalled says why)."""
    tasks = admin(shadow, "GET", f"/v1/shadow-links/{name}/status")["tasks"]
    loops = [t for t in tasks if str(t.get("task", "")).startswith("fetch-from-source-broker")]
    return "; ".join(f"{t['task']}: {t.get('fetches_in_flight')} sessions, round trip {t.get('round_trip_ms')} ms, "
                     f"errors {t.get('errors') or 'none'}" for t in loops) or "no fetch loop in status"


def rpo(args: argparse.Namespace, work: Path, source: BrokerProcess, proxy: ProxyProcess,
        brokers: list[BrokerProcess]) -> Case:  # fmt: skip
    proxy.set_delay(args.delay_ms / 2000)
    topic = "wan-rpo"
    create_topic(source.bootstrap, topic, partitions=args.rpo_partitions, timeout=60)
    shadow = start_shadow(work, "shadow-rpo", brokers)
    try:
        name = "wan-rpo"
        admin(shadow, "POST", "/v1/shadow-links", wan_link_spec(name, proxy, topic))
        wanted = {(topic, p) for p in range(args.rpo_partitions)}

        def link_active() -> bool:
            parts = link_partitions(shadow, name)
            return all(tp in parts and parts[tp]["state"] == "ACTIVE" for tp in wanted)

        wait_until(link_active, timeout=60, interval=0.1, message=f"link {name} ACTIVE on every partition")
        case = Case(500, f"link through {args.delay_ms:.0f} ms RTT, spec defaults")
        rpo_args = argparse.Namespace(
            record_size=1024, mbps=args.rpo_mbps, seconds=args.rpo_seconds, partitions=args.rpo_partitions,
            linger_ms=1, consumer_fetch_wait_ms=5, drain=15, profile=0,
        )  # fmt: skip
        measure_rpo(rpo_args, case, source, shadow, topic, None, [])
        parts = link_partitions(shadow, name)
        case.link_status = ", ".join(
            f"p{tp[1]}: lag {p['lag']}, shadow HW {p['shadow_high_watermark']}" for tp, p in sorted(parts.items())
        )
        return case
    finally:
        stop_shadow(shadow, brokers)


def _size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def print_catch_up(args: argparse.Namespace, loaded: Loaded, runs: list[tuple[CatchUp, CatchUp]]) -> None:
    """``runs``: (0 ms run, delayed run) per repeat."""
    label = _size_label(loaded.record_size)
    print(f"{label} records: {loaded.records:,} records, {loaded.value_bytes / MIB:,.0f} MiB of values, "
          f"{len(loaded.end_offsets)} partitions")  # fmt: skip
    for repeat, (zero, delayed) in enumerate(runs):
        print(
            f"  repeat {repeat + 1}: 0 ms {zero.mb_per_second(loaded):7.1f} MB/s from POST "
            f"({zero.copy_mb_per_second(loaded):7.1f} copy, first data after {zero.data_after:.2f} s); "
            f"{args.delay_ms:.0f} ms RTT {delayed.mb_per_second(loaded):7.1f} MB/s from POST "
            f"({delayed.copy_mb_per_second(loaded):7.1f} copy, first data after {delayed.data_after:.2f} s); "
            f"ratio {delayed.mb_per_second(loaded) / zero.mb_per_second(loaded):.3f} from POST, "
            f"{delayed.copy_mb_per_second(loaded) / zero.copy_mb_per_second(loaded):.3f} copy"
        )
        print(f"            CPU (% of one core): 0 ms: {zero.cpu}; {args.delay_ms:.0f} ms: {delayed.cpu}")
        if args.trace:
            print(f"            0 ms: {zero.trace}\n            {args.delay_ms:.0f} ms: {delayed.trace}")
    zero_post = max(z.mb_per_second(loaded) for z, _ in runs)
    delayed_post = max(d.mb_per_second(loaded) for _, d in runs)
    zero_copy = max(z.copy_mb_per_second(loaded) for z, _ in runs)
    delayed_copy = max(d.copy_mb_per_second(loaded) for _, d in runs)
    print(
        f"  best: 0 ms {zero_post:.1f} MB/s from POST, {zero_copy:.1f} copy; {args.delay_ms:.0f} ms RTT "
        f"{delayed_post:.1f} from POST, {delayed_copy:.1f} copy"
    )
    print(
        f"  {label}: ratio {args.delay_ms:.0f} ms / 0 ms = {delayed_copy / zero_copy:.3f} copy, "
        f"{delayed_post / zero_post:.3f} from POST (best against best)"
    )
    copy_ratios = [d.copy_mb_per_second(loaded) / z.copy_mb_per_second(loaded) for z, d in runs]
    post_ratios = [d.mb_per_second(loaded) / z.mb_per_second(loaded) for z, d in runs]
    print(
        f"  {label}: ratio {args.delay_ms:.0f} ms / 0 ms = {statistics.median(copy_ratios):.3f} copy, "
        f"{statistics.median(post_ratios):.3f} from POST (median of the repeats' own ratios, each pair run "
        f"back to back)"
    )


def print_rpo(args: argparse.Namespace, case: Case) -> None:
    lat = case.latencies
    achieved = case.produced / case.produce_seconds if case.produce_seconds else 0.0
    print(f"recovery point, {case.label}, {args.rpo_partitions} partitions:")
    print(
        f"  produced {case.produced:,} 1-KiB records in {case.produce_seconds:.1f} s "
        f"({achieved * 1024 / MIB:.2f} MiB/s); acked {case.acked:,}, failed {case.failed:,}"
    )
    if lat:
        print(
            f"  ack -> seen on the shadow: p50 {ms(percentile(lat, 0.5))} ms, p90 {ms(percentile(lat, 0.9))} ms, "
            f"p99 {ms(percentile(lat, 0.99))} ms, p99.9 {ms(percentile(lat, 0.999))} ms, max {ms(lat[-1])} ms"
        )
    print(f"  matched {case.matched:,} of {case.acked:,} acknowledged; never seen {case.never_seen:,}")
    print(
        "  per 10 s window of ack time: "
        + "; ".join(f"{t:.0f}s p50 {ms(p50)} p99 {ms(p99)} max {ms(mx)}" for t, _, p50, p99, mx in case.windows)
    )
    print(f"  CPU over the produce phase (% of one core): {case.cpu}")
    print(f"  link status at the end: {case.link_status}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="MiB of values per record size (default 1024)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions per catch-up topic (default 6)")
    parser.add_argument("--delay-ms", type=float, default=50, help="round trip the proxy adds (default 50)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each case (default 2)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="record sizes (default 100,10240)")
    parser.add_argument("--cold", action="store_true", help="no page-cache warm-up before each catch-up")
    parser.add_argument("--trace", action="store_true",
                        help="print when each run had 10/50/90 %% of the records and when each partition finished")
    parser.add_argument("--timeout", type=float, default=900, help="cap in seconds on each catch-up")
    parser.add_argument("--rpo-seconds", type=float, default=30, help="seconds of measured load (default 30; 0: skip)")
    parser.add_argument("--rpo-mbps", type=float, default=20, help="MiB/s produced (default 20)")
    parser.add_argument("--rpo-partitions", type=int, default=3, help="partitions of the RPO topic (default 3)")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.mb < 1 or args.partitions < 1 or args.repeats < 1 or args.delay_ms < 0:
        parser.error("--mb, --partitions and --repeats must be >= 1, --delay-ms >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    brokers: list[BrokerProcess] = []
    proxy = ProxyProcess()
    print(f"proxy pid {proxy.pid} at {proxy.address}", flush=True)
    results: list[tuple[Loaded, list[tuple[CatchUp, CatchUp]]]] = []
    rpo_case: Case | None = None
    with tempfile.TemporaryDirectory(prefix="umbra-wan-bench-") as temp:
        work = Path(temp)
        try:
            source = BrokerProcess(work / "source", name="source", node_id=1, config={"log_level": "WARNING"},
                                   advertise=proxy.address)  # fmt: skip
            brokers.append(source)
            source.start()
            proxy.set_target(source.host, source.port or 0)
            print(f"source broker pid {source.pid} at {source.bootstrap}, advertised as the proxy {proxy.address}",
                  flush=True)  # fmt: skip
            loaded = []
            for size in args.sizes:
                print(f"loading {args.mb} MiB of {_size_label(size)} records into the source ...", flush=True)
                loaded.append(load(source, f"wan-{size}", args.partitions, size, args.mb * MIB, timeout=900))
            os.sync()
            rates = page_cache_write_rates(work, min(args.mb, 512) * MIB)
            print(f"page-cache writes: {rates[0]:,.0f} MiB/s into new pages, {rates[1]:,.0f} MiB/s into pages "
                  f"freed a moment ago", flush=True)  # fmt: skip
            for item in loaded:
                runs = []
                for repeat in range(args.repeats):
                    order = (0.0, args.delay_ms) if repeat % 2 == 0 else (args.delay_ms, 0.0)
                    done = {}
                    for delay in order:
                        print(f"{_size_label(item.record_size)}: catch-up at {delay:.0f} ms RTT, repeat "
                              f"{repeat + 1} ...", flush=True)  # fmt: skip
                        done[delay] = catch_up(args, work, source, proxy, item, delay, repeat, brokers)
                        print(f"  {done[delay].mb_per_second(item):,.1f} MB/s from POST, "
                              f"{done[delay].copy_mb_per_second(item):,.1f} copy", flush=True)  # fmt: skip
                    runs.append((done[0.0], done[args.delay_ms]))
                results.append((item, runs))
            if args.rpo_seconds > 0:
                print(f"recovery point at {args.rpo_mbps} MiB/s through {args.delay_ms:.0f} ms RTT ...", flush=True)
                rpo_case = rpo(args, work, source, proxy, brokers)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            errors = stop_all(reversed(brokers))
            proxy.stop()
            if errors:
                print(f"stopping brokers: {errors}", file=sys.stderr)
    print()
    print(f"catch-up through the proxy, {args.delay_ms:.0f} ms RTT against 0 ms (a fresh shadow each run, link fetch "
          f"settings at the spec's defaults, page cache {'cold' if args.cold else 'warmed'}):")  # fmt: skip
    for item, runs in results:
        print_catch_up(args, item, runs)
    if rpo_case is not None:
        print()
        print_rpo(args, rpo_case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
