"""The stage contract: ``Stage``, the base class of every task in a pipeline's chain, and
``@stage`` (``base``); dead-lettering the items a stage gives up on (``letters``)."""

from __future__ import annotations

from workers.stages.base import Stage, stage
from workers.stages.letters import dead_letter

__all__ = ["Stage", "dead_letter", "stage"]
