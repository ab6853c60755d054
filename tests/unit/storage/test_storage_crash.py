"""An acknowledged append survives kill -9 of the writing process (no userspace buffering)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from umbra.storage.config import LogConfig
from umbra.storage.log import Log


def test_appends_survive_sigkill(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from umbra.records.records import build_batch
        from umbra.storage.config import LogConfig
        from umbra.storage.log import Log
        log = Log.open(Path({str(tmp_path / "t-0")!r}), "t", 0, LogConfig(segment_bytes=2000))
        for i in range(50):
            log.append_as_leader(build_batch([(None, b"x" * 30, [], i)]), leader_epoch=1, now_ms=i)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    completed = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert completed.returncode == -9
    log = Log.open(tmp_path / "t-0", "t", 0, LogConfig(segment_bytes=2000))
    try:
        assert log.log_end_offset == 50
        assert log.segment_count > 1
        assert log.end_offset_for_leader_epoch(1) == (1, 50)
    finally:
        log.close()
