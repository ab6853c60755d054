"""Helpers for the client's unit tests live in client_fakes.py (an in-test asyncio Kafka server)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
