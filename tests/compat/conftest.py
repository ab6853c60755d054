"""The compatibility suite: real Kafka client libraries against a real `umbra broker` process."""

from __future__ import annotations

import sys
from pathlib import Path

_COMPAT_DIR = Path(__file__).resolve().parent
if str(_COMPAT_DIR) not in sys.path:
    sys.path.insert(0, str(_COMPAT_DIR))  # for `import roundtrip` under any pytest import mode
