"""Framing spends memory on bytes that arrived, within a budget, never on sizes that were only declared."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from umbra.protocol.framing import FrameDecoder


class Budget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0

    def reserve(self, size: int, *, force: bool = False) -> bool:
        if not force and self.used + size > self.capacity:
            return False
        self.used += size
        self.peak = max(self.peak, self.used)
        return True

    def release(self, size: int) -> None:
        self.used -= size
        assert self.used >= 0


def test_a_declared_size_alone_costs_one_first_chunk_at_most() -> None:
    budget = Budget(10 << 20)
    decoder = FrameDecoder(100 << 20, budget=budget, first_chunk=1 << 20)
    assert decoder.feed(struct.pack(">i", 100 << 20)) == []
    assert budget.used == 0  # four bytes: nothing taken yet (the size is in the next read's staging)
    assert decoder.feed(b"x") == []
    assert budget.used == 1 << 20  # the first chunk, not the 100 MiB declared
    decoder.discard()
    assert budget.used == 0


def test_a_frame_grows_chunk_by_chunk_and_comes_out_whole() -> None:
    budget = Budget(64 << 20)
    decoder = FrameDecoder(100 << 20, budget=budget, first_chunk=1 << 20)
    payload = bytes(range(256)) * (5 << 12)  # 5 MiB
    frames = decoder.feed(struct.pack(">i", len(payload)) + payload[: 3 << 20])
    assert frames == [] and budget.used == (1 << 20) + (2 << 20) + (2 << 20)  # 1 + 2, then the last 2 MiB
    frames = decoder.feed(payload[3 << 20:])
    assert frames == [payload] and budget.used == len(payload)
    budget.release(len(frames[0]))
    assert budget.used == 0


def test_a_full_budget_blocks_large_frames_until_resumed() -> None:
    budget = Budget(2 << 20)
    decoder = FrameDecoder(100 << 20, budget=budget, first_chunk=1 << 20)
    payload = b"p" * (3 << 20)
    assert decoder.feed(struct.pack(">i", len(payload)) + payload[: 1 << 20]) == []
    assert decoder.blocked and budget.used == 1 << 20  # the 2 MiB second chunk does not fit
    assert decoder.resume() == [] and decoder.blocked
    budget.capacity = 4 << 20
    assert decoder.resume() == [] and not decoder.blocked
    assert decoder.feed(payload[1 << 20:]) == [payload]


def test_small_frames_are_admitted_but_count() -> None:
    budget = Budget(100)
    decoder = FrameDecoder(1 << 20, budget=budget, direct_threshold=1024)
    frames = decoder.feed(b"".join(struct.pack(">i", 80) + b"s" * 80 for _ in range(3)))
    assert len(frames) == 3 and budget.used == 240  # over capacity: the next large chunk will wait
    assert decoder.feed(struct.pack(">i", 4096) + b"L" * 10) == [] and decoder.blocked


def test_a_refused_frame_gives_back_what_its_read_took() -> None:
    budget = Budget(1 << 20)
    decoder = FrameDecoder(1000, budget=budget)
    try:
        decoder.feed(struct.pack(">i", 10) + b"0123456789" + struct.pack(">i", 5000))
    except Exception:  # FrameTooLarge: the connection closes
        pass
    assert budget.used == 0


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=6000), max_size=10),
       cuts=st.lists(st.integers(min_value=1, max_value=7000), min_size=1, max_size=20),
       capacity=st.integers(min_value=2048, max_value=20000))
def test_any_frames_within_any_budget(sizes: list[int], cuts: list[int], capacity: int) -> None:
    """Frames come out whole and in order whatever the reads and the budget, the budget is never exceeded by
    large chunks, and everything taken is given back by the handler and the decoder."""
    budget = Budget(capacity)
    decoder = FrameDecoder(8000, budget=budget, staging_size=1024, direct_threshold=256, first_chunk=1024)
    payloads = [bytes((i + j) & 0xFF for j in range(size)) for i, size in enumerate(sizes)]
    stream = memoryview(b"".join(struct.pack(">i", len(p)) + p for p in payloads))
    frames: list[bytearray] = []
    cut = 0
    while len(stream) or decoder.blocked:
        if decoder.blocked:  # requests are handled meanwhile, which frees room
            budget.capacity += 4096
            frames += decoder.resume()
            continue
        target = decoder.get_buffer()
        assert len(target) > 0
        n = min(len(target), len(stream), cuts[cut % len(cuts)])
        cut += 1
        target[:n] = stream[:n]
        stream = stream[n:]
        frames += decoder.buffer_updated(n)
    assert frames == payloads and decoder.buffered == 0
    assert budget.used == sum(len(p) for p in payloads)
