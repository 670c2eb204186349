"""The documented import path of ``setup(app)`` and ``beat_schedule`` (they live in
``workers.runtime.setup``)."""

from __future__ import annotations

from workers.runtime.setup import beat_schedule, setup

__all__ = ["beat_schedule", "setup"]
