"""Idempotent-producer state for one partition: per producer id, its epoch and its last 5 batches.

Kafka keeps the same window (max.in.flight.requests.per.connection <= 5 for idempotence), which is what lets a
retried batch be recognised as a duplicate and answered with its original offsets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from umbra.errors import InvalidProducerEpoch, OutOfOrderSequence
from umbra.records.batch import BatchHeader, increment_sequence

BATCHES_TO_KEEP = 5


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_KEEP))

    @property
    def last_sequence(self) -> int | None:
        return self.batches[-1].last_sequence if self.batches else None


class ProducerStateManager:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}
        self.max_producer_id = -1

    def check(self, header: BatchHeader, pending: dict[int, tuple[int, int]] | None = None) -> BatchMetadata | None:
        """Validate a leader append. Returns the cached batch if ``header`` is a duplicate, None if it may be
        appended; raises InvalidProducerEpoch / OutOfOrderSequence otherwise.

        ``pending`` maps producer id -> (epoch, last sequence) for earlier batches of the same request, and is
        updated. An unknown producer is accepted at any sequence, as Kafka does since KIP-360: its state may
        have been removed with the segments that held it.
        """
        producer_id = header.producer_id
        if producer_id < 0 or header.base_sequence < 0:
            return None
        epoch = header.producer_epoch
        first_sequence = header.base_sequence
        entry = self.producers.get(producer_id)
        if pending is not None and producer_id in pending:
            known_epoch, known_last = pending[producer_id]
            cached: tuple[BatchMetadata, ...] = ()
        elif entry is not None:
            known_epoch, known_last = entry.epoch, (entry.last_sequence if entry.last_sequence is not None else -2)
            cached = tuple(entry.batches)
        else:
            known_epoch, known_last, cached = -1, -2, ()
        if known_epoch >= 0:
            if epoch < known_epoch:
                raise InvalidProducerEpoch(f"producer {producer_id} epoch {epoch} is older than {known_epoch}")
            if epoch > known_epoch:
                if first_sequence != 0:
                    raise OutOfOrderSequence(
                        f"producer {producer_id} new epoch {epoch} must start at sequence 0, not {first_sequence}"
                    )
            else:
                last_sequence = header.last_sequence
                for batch in cached:
                    if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                        return batch
                if known_last != -2 and first_sequence != increment_sequence(known_last, 1):
                    raise OutOfOrderSequence(
                        f"producer {producer_id} epoch {epoch}: expected sequence "
                        f"{increment_sequence(known_last, 1)}, got {first_sequence}"
                    )
        if pending is not None:
            pending[producer_id] = (epoch, header.last_sequence)
        return None

    def update(self, header: BatchHeader) -> None:
        """Record a stored batch (offsets final). Never rejects: used by replication and log recovery too."""
        producer_id = header.producer_id
        if producer_id < 0:
            return
        if producer_id > self.max_producer_id:
            self.max_producer_id = producer_id
        entry = self.producers.get(producer_id)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = ProducerEntry(producer_id, header.producer_epoch)
            self.producers[producer_id] = entry
        elif header.producer_epoch < entry.epoch:
            return
        if header.base_sequence >= 0 and not header.is_control:
            entry.batches.append(
                BatchMetadata(header.base_sequence, header.last_sequence, header.base_offset, header.last_offset)
            )

    def truncate_to(self, offset: int) -> None:
        """Forget batches at or after ``offset`` (log truncation). Producers left without batches keep their
        epoch, so the next batch is accepted at any sequence."""
        for entry in self.producers.values():
            while entry.batches and entry.batches[-1].last_offset >= offset:
                entry.batches.pop()

    def clear(self) -> None:
        self.producers.clear()
