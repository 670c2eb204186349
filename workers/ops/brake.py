"""The dead-letter brake of a pipeline, for operators: read it, and resume a tripped one. A
pipeline over many topics has a brake per topic (kept with the topic's offsets)."""

from __future__ import annotations

from workers.config import PipelineConfig
from workers.ops.context import Ops
from workers.ops.pipeline_topics import every_topic
from workers.state.brake import Trip
from workers.state.brake_redis import RedisBrake


def brake_state(ops: Ops, config: PipelineConfig) -> Trip | None:
    """The trip of the pipeline's brake; None when it is not tripped."""
    return RedisBrake(ops.redis()).state(ops.space(config))


def tripped_brakes(ops: Ops, config: PipelineConfig) -> list[tuple[PipelineConfig, Trip]]:
    """The tripped brakes of the pipeline: of its one topic, or of each topic it reads now
    (each the pipeline narrowed to that topic), in topic order."""
    found = [(topic, brake_state(ops, topic)) for topic in every_topic(ops, config)]
    return [(topic, trip) for topic, trip in found if trip is not None]


def resume_brake(ops: Ops, config: PipelineConfig) -> Trip | None:
    """Clear the trip and the counts (the window and the runs of dead letters start again);
    returns the trip cleared, None when the brake was not tripped. The pipeline's pulls go on
    at their next run, and hand off the batches the brake held once they are due (at once)."""
    return RedisBrake(ops.redis()).resume(ops.space(config))
