"""Helpers for the shadow unit tests: fake_source.py (the source cluster) and shadow_harness.py (the shadow)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
