"""Tickets in message headers: what the puller writes is read back; anything else is None."""

from __future__ import annotations

from typing import Any

import pytest

from workers.pulling.tickets import HEADER, Ticket, read
from workers.state.keys import Space
from workers.state.ledger import Slice

TICKET = Ticket(
    "alarms",
    Space("w", "alert", "g", "alarm-events"),
    (Slice(0, "ab12", 10, 20), Slice(3, "ab12", 7, 9)),
    120_000,
    3,
)


def test_a_header_reads_back_with_the_stage_position() -> None:
    stages = [read(TICKET.header(i, 3)[HEADER]) for i in range(3)]

    assert [s.ticket for s in stages if s is not None] == [TICKET] * 3
    assert [(s.first, s.last) for s in stages if s is not None] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    assert TICKET.records == 12
    assert str(TICKET) == "alert/g/alarm-events [0@10..19, 3@7..8]"


def good() -> dict[str, Any]:
    header: dict[str, Any] = TICKET.header(0, 1)[HEADER]
    return header


@pytest.mark.parametrize(
    "broken",
    [
        None,
        "a string",
        [],
        {},
        {**good(), "v": 2},
        {**good(), "space": ["w", "alert", "g"]},
        {**good(), "space": ["w", "alert", "g", 7]},
        {**good(), "slices": []},
        {**good(), "slices": [[0, "b", 1]]},
        {**good(), "slices": [["0", "b", 1, 2]]},
        {**good(), "slices": [[0, "b", 1.5, 2]]},
        {**good(), "slices": [[True, "b", 1, 2]]},
        {**good(), "slices": "0,b,1,2"},
        {**good(), "stage": [1, 1]},
        {**good(), "stage": [-1, 3]},
        {**good(), "stage": [0]},
        {**good(), "budget_ms": "60000"},
        {**good(), "pipeline": None},
        {k: v for k, v in good().items() if k != "max_starts"},
    ],
)
def test_a_malformed_header_is_no_ticket(broken: Any) -> None:
    assert read(broken) is None
