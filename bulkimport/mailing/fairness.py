"""The order in which due invitations are handed to the workers: resends and small imports
first, then every other import in turn, a chunk each, so that a two-row import is not queued
behind a bulk run of thousands, and two bulk runs share the send-rate limit.

Only a window of chunks is ever enqueued ahead of the workers (`MAIL_QUEUE_CHUNKS`); each
finished job and each sweep tops it up in this order, so that an import submitted later still
gets its turn at the next chunk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import zip_longest


@dataclass(frozen=True, slots=True)
class Due:
    """A due invitation as the fair order sees it."""

    id: int
    batch_id: int | None  # None: a resend made outside an import
    ahead: bool  # a resend, or part of a small import: goes before the bulk runs


def fair_order(due: Iterable[Due], limit: int, chunk: int) -> list[int]:
    """At most `limit` ids: those marked `ahead` first, then the rest; within each, the batches
    take turns a `chunk` at a time, each in its own order (oldest first)."""
    chosen: list[int] = []
    for ahead in (True, False):
        by_batch: dict[int | None, list[int]] = {}
        for item in due:
            if item.ahead == ahead:
                by_batch.setdefault(item.batch_id, []).append(item.id)
        turns = [[ids[i:i + chunk] for i in range(0, len(ids), chunk)]
                 for _, ids in sorted(by_batch.items(), key=lambda kv: min(kv[1]))]
        for round_ in zip_longest(*turns):
            for part in round_:
                if part:
                    chosen.extend(part)
                    if len(chosen) >= limit:
                        return chosen[:limit]
    return chosen
