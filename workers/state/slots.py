"""Consumer slots: at most one long-lived consumer runs per (pipeline, slot).

A slot is a Redis key holding the running consumer's token with a TTL it renews every cycle,
or ``pending:<id>`` while a consumer task is queued (set by the supervisor or by a consumer
handing over at the end of its run). A consumer may claim a free or pending slot, never one
another consumer holds; a SIGKILLed consumer's slot frees itself when its TTL runs out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import redis

from workers.state.keys import Space
from workers.state.redis_errors import translated

PENDING = "pending:"

# KEYS: slot; ARGV: token, ttl ms. Claims a free or pending slot, or renews our own.
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and string.sub(cur, 1, 8) ~= 'pending:' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: slot; ARGV: token, new value, ttl ms. Replaces our own value (hand-over, release).
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


class Slots:
    """Slot keys of one pipeline's space on ``client``; ``ttl`` and ``pending_ttl`` in seconds."""

    def __init__(self, client: redis.Redis, space: Space, ttl: float, pending_ttl: float) -> None:
        self.client = client
        self.space = space
        self.ttl_ms = int(ttl * 1000)
        self.pending_ttl_ms = int(pending_ttl * 1000)
        self._claim: Callable[..., Any] = client.register_script(_CLAIM)
        self._swap: Callable[..., Any] = client.register_script(_SWAP)

    def claim(self, slot: int, token: str) -> bool:
        """Take a free or pending slot, or renew ours; False if another consumer holds it."""
        with translated(f"claim slot {slot} of {self.space}"):
            return bool(self._claim(keys=[self.space.key("slot", slot)], args=[token, self.ttl_ms]))

    def hand_over(self, slot: int, token: str) -> bool:
        """Mark our slot pending for the consumer task we are about to enqueue."""
        value = PENDING + uuid.uuid4().hex
        with translated(f"hand over slot {slot} of {self.space}"):
            return bool(
                self._swap(
                    keys=[self.space.key("slot", slot)], args=[token, value, self.pending_ttl_ms]
                )
            )

    def release(self, slot: int, token: str) -> bool:
        """Free our slot (the supervisor starts a new consumer on its next round)."""
        with translated(f"release slot {slot} of {self.space}"):
            return bool(self._swap(keys=[self.space.key("slot", slot)], args=[token, "", 0]))

    def mark_pending(self, slot: int) -> bool:
        """For the supervisor: True if the slot was free and is now pending (enqueue one)."""
        value = PENDING + uuid.uuid4().hex
        with translated(f"check slot {slot} of {self.space}"):
            return bool(
                self.client.set(
                    self.space.key("slot", slot), value, nx=True, px=self.pending_ttl_ms
                )
            )

    def holder(self, slot: int) -> str | None:
        """The slot's value: a consumer token, ``pending:...``, or None when free."""
        with translated(f"read slot {slot} of {self.space}"):
            raw = self.client.get(self.space.key("slot", slot))
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)
