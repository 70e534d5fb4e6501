"""The fair order of due invitations: resends and small imports first, bulk imports in turn."""

from __future__ import annotations

import pytest

from bulkimport.mailing.fairness import Due, fair_order


def bulk(batch: int, first: int, count: int) -> list[Due]:
    return [Due(i, batch, False) for i in range(first, first + count)]


CASES = {
    "a small import goes before a bulk run queued earlier": (
        bulk(1, 1, 6) + [Due(100, 2, True), Due(101, 2, True)], 4, 2, [100, 101, 1, 2]),
    "two bulk runs take turns a chunk each": (
        bulk(1, 1, 4) + bulk(2, 10, 4), 8, 2, [1, 2, 10, 11, 3, 4, 12, 13]),
    "a resend goes first": (bulk(1, 1, 3) + [Due(50, None, True)], 2, 2, [50, 1]),
    "the limit cuts": (bulk(1, 1, 10), 3, 2, [1, 2, 3]),
    "nothing due": ([], 5, 2, []),
    "an older batch starts its turn first": (bulk(7, 20, 2) + bulk(3, 30, 2), 4, 1,
                                             [20, 30, 21, 31]),
}


@pytest.mark.parametrize(("due", "limit", "chunk", "expected"), CASES.values(), ids=CASES.keys())
def test_fair_order(due, limit, chunk, expected):
    assert fair_order(due, limit, chunk) == expected
