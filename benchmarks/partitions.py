"""Cost as the work grows: shadow-link catch-up for the same bytes over 10, 100 and 1,000 partitions.

    .venv/bin/python benchmarks/partitions.py                    # 300 MiB of 1-KiB records per case
    .venv/bin/python benchmarks/partitions.py --mb 64            # a quicker run
    .venv/bin/python benchmarks/partitions.py --record-size 10240
    .venv/bin/python benchmarks/partitions.py --profile 20 --profile-cases 1000   # py-spy the shadow
    .venv/bin/python benchmarks/partitions.py --cases 1000 --profile 20 --profile-idle   # wall clock, idle included

It starts one source broker (tests/harness.py, free loopback ports, a temporary directory) and loads it first,
for every case (`--cases`, default 10,100,1000), with a topic of that many partitions holding `--mb` MiB of
`--record-size`-byte random values (default 1 KiB), from one confluent-kafka producer (acks=1, linger.ms=100,
batch.size=1 MiB, no compression, partitions round robin, so every partition holds the same number of records).

Then, per case, it starts a FRESH shadow broker (so that its peak RSS is that case's), creates a shadow link for
that topic (admin API, spec defaults for the fetch settings) and times, from the POST, until the link's status
shows for every partition lag 0 and source and shadow high watermarks equal to what was loaded. It reads the
shadow's peak resident set (VmHWM in /proc/PID/status) when the link has caught up, then stops that broker
(its files are deleted at the end). Each case runs `--repeats` times (default 2); the fastest run counts (every
run's MiB/s is printed) and the peak RSS is the highest of the runs.

Page cache: unlike the other benchmarks, the cases here write into new page-cache pages (no warm-up), so that
every case runs in the same memory state. On this VM a write into a page the guest has not used lately costs
a host page fault (benchmarks/copylimit.py), and recently freed pages stop being cheap about 2 s after they
are freed: a warm-up would carry the 10-partition case (under a second) all the way and the 1,000-partition
case (several seconds) only part of the way. `--warm` warms anyway, to see the software's own cost per case.

It prints per case: MiB/s of record values (from the POST, and "copy MiB/s" from the first status poll that
showed data on the shadow, which leaves out topic discovery, partition creation and positioning; "listed s" is
when status first listed every partition, "data s" when it first showed data), records/s, the shadow's peak
RSS, the CPU the shadow and the source used, and the ratio of the 1,000-partition MiB/s to the 10-partition MiB/s (the
largest case to the smallest when other cases are given). Status is polled every 50 ms, or ten times as long as a status call
takes when that is longer (at 1,000 partitions a call takes 10-30 ms), so that polling costs the shadow under
~10%; `--status-interval` fixes it. The times include up to one interval of polling resolution and the status
calls' own cost (printed). 300 MiB copies in about a second at 10 partitions, so the resolution matters there:
`--mb 1000` gives steadier figures.

MB = MiB of record values (keys and batch overhead not counted). Every broker and py-spy is stopped by pid at
the end, also on error or Ctrl-C. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from copylimit import page_cache_write_rates, warm_page_cache  # noqa: E402
from harness import BrokerProcess, create_topic, stop_all  # noqa: E402
from loading import MIB, produce_values  # noqa: E402
from rpo import CpuMeter, PySpy, admin, link_partitions, link_spec, proc_status_kib, profile_directory  # noqa: E402


@dataclass
class Loaded:
    topic: str
    partitions: int
    records: int
    value_bytes: int
    end_offsets: list[int]
    seconds: float

    @property
    def record_size(self) -> int:
        return self.value_bytes // self.records


@dataclass
class Result:
    loaded: Loaded
    seconds: float  # from the POST until caught up
    listed_after: float  # from the POST until status listed every partition
    data_after: float  # from the POST until status first showed data on the shadow
    peak_rss_kib: int
    rss_kib: int
    cpu: str
    status_calls: int
    status_seconds: float
    profile: str = ""
    all_mb_per_second: list[float] = field(default_factory=list)  # every run of the case; this is the fastest

    @property
    def mb_per_second(self) -> float:
        return self.loaded.value_bytes / MIB / self.seconds

    @property
    def copy_mb_per_second(self) -> float:
        return self.loaded.value_bytes / MIB / max(1e-9, self.seconds - self.data_after)


def load(source: BrokerProcess, topic: str, partitions: int, record_size: int, total_bytes: int,
         timeout: float = 600) -> Loaded:
    """``total_bytes`` of ``record_size``-byte values into a new topic (confluent-kafka, acks=1, round robin)."""
    create_topic(source.bootstrap, topic, partitions=partitions, timeout=60)
    records = max(partitions, total_bytes // record_size)
    config = {
        "acks": 1,
        "linger.ms": 100,
        "batch.size": MIB,
        "compression.type": "none",
        "queue.buffering.max.kbytes": 1024 * 1024,
        "queue.buffering.max.messages": 2_000_000,
    }
    seconds = produce_values(source.bootstrap, topic, partitions, record_size, records, config, timeout=timeout)
    end_offsets = [records // partitions + (1 if p < records % partitions else 0) for p in range(partitions)]
    return Loaded(topic, partitions, records, records * record_size, end_offsets, seconds)


def catch_up(
    args: argparse.Namespace, source: BrokerProcess, loaded: Loaded, work: Path, profile_dir: Path | None, run: int
) -> Result:
    shadow = BrokerProcess(
        work / f"shadow-{loaded.partitions}-{run}",
        name=f"shadow-{loaded.partitions}-{run}",
        node_id=2,
        config={"log_level": "WARNING", "auto_create_topics": False},
    )
    spy: PySpy | None = None
    try:
        shadow.start()
        print(f"  fresh shadow broker pid {shadow.pid} at {shadow.bootstrap}", flush=True)
        os.sync()
        if args.warm:  # recently freed page-cache pages for this case (benchmarks/copylimit.py)
            warm_page_cache(work, args.mb * MIB)
        name = f"parts-{loaded.partitions}"
        expected = {(loaded.topic, p): end for p, end in enumerate(loaded.end_offsets)}
        calls = [0, 0.0]  # status calls, seconds spent in them
        listed_after: list[float] = []
        data_after: list[float] = []
        cpu = CpuMeter({"shadow": shadow.pid, "source": source.pid})
        started = time.perf_counter()
        admin(shadow, "POST", "/v1/shadow-links", link_spec(name, source, loaded.topic))
        profiled = args.profile and (not args.profile_cases or loaded.partitions in args.profile_cases)
        if profiled and profile_dir is not None:
            spy = PySpy(
                shadow.pid,
                args.profile,
                profile_dir / f"shadow-{loaded.partitions}-partitions.txt",
                idle=args.profile_idle,
            )

        def caught_up() -> bool:
            before = time.perf_counter()
            parts = link_partitions(shadow, name)
            calls[0] += 1
            calls[1] += time.perf_counter() - before
            if not listed_after and all(tp in parts for tp in expected):
                listed_after.append(time.perf_counter() - started)
            if not data_after and any(p["shadow_high_watermark"] > 0 for p in parts.values()):
                data_after.append(time.perf_counter() - started)
            return all(
                (p := parts.get(tp)) is not None
                and p["lag"] == 0
                and p["source_high_watermark"] == p["shadow_high_watermark"] == end
                for tp, end in expected.items()
            )

        deadline = time.monotonic() + args.timeout
        while not caught_up():
            if time.monotonic() > deadline:
                raise TimeoutError(f"link {name} did not catch up within {args.timeout:.0f}s")
            # auto: poll often, but keep the status calls under ~10% of the shadow's time
            last_call = calls[1] / max(1, calls[0])
            time.sleep(args.status_interval if args.status_interval > 0 else max(0.05, 10 * last_call))
        seconds = time.perf_counter() - started
        cpu_text = cpu.report()
        peak, rss = proc_status_kib(shadow.pid, "VmHWM"), proc_status_kib(shadow.pid, "VmRSS")
        profile = spy.finish() if spy is not None else ""
        return Result(
            loaded,
            seconds,
            listed_after[0] if listed_after else seconds,
            data_after[0] if data_after else seconds,
            peak,
            rss,
            cpu_text,
            int(calls[0]),
            calls[1],
            profile,
        )
    finally:
        if spy is not None:
            spy.stop()
        shadow.stop()
        print(f"  {shadow.name} stopped (exit code {shadow.last_exit_code})", flush=True)
        # Its files stay until the end: this machine's ext4 has no journal, and without one every inode
        # allocation scans past inodes freed in the last minutes, so deleting a 1,000-partition shadow here
        # would slow the next run's partition creation by seconds.


def print_report(args: argparse.Namespace, results: list[Result]) -> None:
    print()
    print(
        f"shadow-link catch-up of {args.mb} MiB of {args.record_size}-byte records per case (source loaded with "
        "acks=1, round robin); a fresh shadow broker per case; link fetch settings: spec defaults"
    )
    header = (
        f"{'partitions':>10}{'records':>11}{'load s':>8}{'catch-up s':>11}{'MiB/s':>8}{'records/s':>11}"
        f"{'listed s':>9}{'data s':>7}{'copy MiB/s':>11}{'shadow peak RSS':>16}{'RSS at end':>11}   CPU (% of one core)"
    )
    print(header)
    print("-" * (len(header) + 22))
    for r in results:
        print(
            f"{r.loaded.partitions:>10,}{r.loaded.records:>11,}{r.loaded.seconds:>8.1f}{r.seconds:>11.1f}"
            f"{r.mb_per_second:>8.1f}{r.loaded.records / r.seconds:>11,.0f}{r.listed_after:>9.1f}{r.data_after:>7.1f}"
            f"{r.copy_mb_per_second:>11.1f}{r.peak_rss_kib / 1024:>13,.0f} MiB{r.rss_kib / 1024:>7,.0f} MiB"
            f"   {r.cpu}"
        )
    print()
    for r in results:
        if len(r.all_mb_per_second) > 1:
            runs = ", ".join(f"{x:,.1f}" for x in r.all_mb_per_second)
            print(f"  {r.loaded.partitions:,} partitions: best of {len(r.all_mb_per_second)} runs (MiB/s: {runs})")
    for r in results:
        print(
            f"  {r.loaded.partitions:,} partitions: {r.status_calls} status calls took {r.status_seconds:.2f}s in all"
            f" ({1000 * r.status_seconds / max(1, r.status_calls):.0f} ms each)"
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        print()
        print(
            f"ratio MiB/s {large.loaded.partitions:,}/{small.loaded.partitions:,} partitions: "
            f"{large.mb_per_second / small.mb_per_second:.2f} (from the POST), "
            f"{large.copy_mb_per_second / small.copy_mb_per_second:.2f} (from the first data on the shadow)"
            "   target: >= 0.5"
        )
    for r in results:
        print(
            f"shadow peak RSS at {r.loaded.partitions:,} partitions: {r.peak_rss_kib / 1024:,.0f} MiB"
            + ("   target: < 1 GiB" if r.loaded.partitions >= 1000 else "")
            + ("   target: < 300 MB" if r.loaded.partitions <= 10 else "")
        )
    for r in results:
        if r.profile:
            print()
            print(f"py-spy of the shadow broker, {r.loaded.partitions:,} partitions:")
            print("\n".join("  " + line for line in r.profile.splitlines()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=300, help="MiB of record values per case (default 300)")
    parser.add_argument("--record-size", type=int, default=1024, help="bytes per record value (default 1024)")
    parser.add_argument("--cases", default="10,100,1000", help="partition counts, comma-separated")
    parser.add_argument("--timeout", type=float, default=900, help="cap in seconds on each catch-up (default 900)")
    parser.add_argument(
        "--status-interval",
        type=float,
        default=0,
        help="seconds between status polls (default 0: auto, 0.05 s or 10x the last status call, the larger)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs of each case, each on a fresh shadow; the fastest counts (default 2)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="start each case on recently freed page-cache pages (benchmarks/copylimit.py); favours short cases",
    )
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS", help="py-spy the shadow for SECONDS")
    parser.add_argument(
        "--profile-idle", action="store_true", help="py-spy --idle: wall-clock samples (blocked in fsync, waiting)"
    )
    parser.add_argument("--profile-cases", default="", help="partition counts to profile (default: every case)")
    parser.add_argument("--profile-dir", type=Path, default=None, help="where py-spy output goes (default: temp dir)")
    args = parser.parse_args(argv)
    args.cases = [int(x) for x in args.cases.split(",") if x.strip()]
    args.profile_cases = {int(x) for x in args.profile_cases.split(",") if x.strip()}
    if not args.cases or min(args.cases) < 1 or args.mb < 1 or args.record_size < 1:
        parser.error("--cases, --mb and --record-size must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[Result] = []
    page_cache = (0.0, 0.0)
    with tempfile.TemporaryDirectory(prefix="umbra-partitions-bench-") as temp:
        temp_dir = Path(temp)
        profile_dir = profile_directory(args, temp_dir)
        source = BrokerProcess(temp_dir / "source", name="source", node_id=1, config={"log_level": "WARNING"})
        try:
            source.start()
            print(f"source broker pid {source.pid} at {source.bootstrap}", flush=True)
            loaded = []
            for partitions in args.cases:
                print(f"loading {args.mb} MiB of {args.record_size}-byte records into {partitions:,} partitions ...",
                      flush=True)  # fmt: skip
                item = load(source, f"parts-{partitions}", partitions, args.record_size, args.mb * MIB)
                print(f"  {item.records:,} records in {item.seconds:.1f}s", flush=True)
                loaded.append(item)
            os.sync()
            page_cache = page_cache_write_rates(temp_dir, 512 * MIB)
            for item in loaded:
                print(f"{item.partitions:,} partitions: shadow link catching up ...", flush=True)
                runs = []
                for run in range(args.repeats):
                    runs.append(catch_up(args, source, item, temp_dir, profile_dir if run == 0 else None, run))
                    r = runs[-1]
                    print(f"  {r.seconds:.1f}s, {r.mb_per_second:.1f} MiB/s, peak RSS {r.peak_rss_kib / 1024:,.0f} MiB",
                          flush=True)  # fmt: skip
                best = min(runs, key=lambda r: r.seconds)
                best.all_mb_per_second = [r.mb_per_second for r in runs]
                best.peak_rss_kib = max(r.peak_rss_kib for r in runs)
                results.append(best)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            errors = stop_all([source])
            print(f"source broker stopped (exit code {source.last_exit_code})")
            if errors:
                print(f"stopping the source: {errors}", file=sys.stderr)
    print_report(args, results)
    print(
        f"page cache: {'recently freed pages (--warm)' if args.warm else 'new pages'}; writes ran at "
        f"{page_cache[0]:,.0f} MiB/s into new pages and {page_cache[1]:,.0f} MiB/s into freed ones (benchmarks/copylimit.py)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
