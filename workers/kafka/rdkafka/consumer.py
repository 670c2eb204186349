"""The package's ``Consumer`` on librdkafka: a confluent-kafka consumer fetches the records, a
kafka-python consumer of the same options answers metadata and offset queries.

Why the split (measured on the embedded broker with librdkafka 2.16): librdkafka sends its
queries over the connections its fetches hold, so each waits behind a pending fetch
(``fetch.wait.max.ms``, 0.5 s), and its watermark query asks about one partition per call,
while the pull asks for the end of every partition at each cycle. kafka-python answers them on
its own connection, all partitions at once, as the default client does: queries behave alike
whichever library fetches.

Positions are kept here: a seek sets one, a poll moves it past the records it returns. A
partition joins librdkafka's assignment at its first seek, at that offset. librdkafka drops
what it had fetched for a partition when the partition is paused or seeked, and a resumed
partition is seeked to the position kept here, so no record is skipped or returned twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import confluent_kafka
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors

from workers.kafka.rdkafka.base import (
    OUT_OF_RANGE,
    Handle,
    Problems,
    RdKafkaError,
    handle_config,
    track,
    translate,
)
from workers.kafka.rdkafka.properties import consumer_config


class RdRecord(NamedTuple):
    """A fetched record, with the attributes of kafka-python's ``ConsumerRecord`` that the
    package reads (``workers.kafka.codecs.Record``); ``timestamp`` in ms."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _rd_tp(tp: TopicPartition, offset: int = confluent_kafka.OFFSET_INVALID) -> Any:
    return confluent_kafka.TopicPartition(tp.topic, tp.partition, offset)


class RdKafkaConsumer(Handle):
    """A librdkafka consumer as the package's ``Consumer``: manual assignment only, no group
    membership, no commits. ``poll`` raises ``OffsetOutOfRangeError({tp: offset})`` for a fetch
    position outside the log, and kafka-python's error for any other error librdkafka reports;
    records fetched along with an error are returned first, the error by the next poll.

    ``options`` are kafka-python's (``ClusterConfig.consumer_options``); ``handle`` builds the
    librdkafka consumer and ``queries`` the kafka-python one (fakes in unit tests).
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        *,
        handle: Callable[[dict[str, Any]], Any] = confluent_kafka.Consumer,
        queries: Callable[..., Any] = KafkaConsumer,
    ) -> None:
        self._options = dict(options)
        self._make_queries = queries
        self._queries: Any = None
        self._problems = Problems("consumer")
        conf = {**consumer_config(options), **handle_config(self._problems)}
        try:
            self._rd = handle(conf)
        except (confluent_kafka.KafkaException, ValueError, TypeError) as exc:
            raise kafka_errors.KafkaConfigurationError(f"librdkafka consumer: {exc}") from exc
        self._max_records = int(options.get("max_poll_records") or 500)
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}  # of the partitions librdkafka fetches
        self._paused: set[TopicPartition] = set()
        self._out_of_range: dict[TopicPartition, int] = {}
        self._failed: kafka_errors.KafkaError | None = None
        self._tps: dict[tuple[str, int], TopicPartition] = {}
        self._abandoned = False
        track(self)

    # -- assignment and positions --------------------------------------------------------------

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Replace the assignment. A partition that stays keeps its position and pause; a new
        one has no position until a seek."""
        self._check()
        wanted = set(partitions)
        gone = [tp for tp in self._positions if tp not in wanted]
        if gone:
            self._call(self._rd.incremental_unassign, [_rd_tp(tp) for tp in gone])
            for tp in gone:
                del self._positions[tp]
        self._assigned = wanted
        self._paused &= wanted
        self._out_of_range = {tp: o for tp, o in self._out_of_range.items() if tp in wanted}

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Fetch ``partition`` from ``offset`` on (records fetched before are dropped)."""
        self._check()
        self._assert_assigned(partition)
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
        target = _rd_tp(partition, offset)
        if partition not in self._positions:
            self._start(partition, target)
        else:
            try:
                self._rd.seek(target)
            except confluent_kafka.KafkaException:
                # A partition librdkafka holds in an error state may refuse a seek: start it anew.
                self._call(self._rd.incremental_unassign, [target])
                self._start(partition, target)
        self._positions[partition] = offset
        self._out_of_range.pop(partition, None)

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record a poll returns for ``partition``."""
        self._assert_assigned(partition)
        try:
            return self._positions[partition]
        except KeyError:
            raise kafka_errors.NoOffsetForPartitionError(
                f"{partition} has no position: seek first"
            ) from None

    def pause(self, *partitions: TopicPartition) -> None:
        self._check()
        new = [tp for tp in partitions if tp in self._assigned and tp not in self._paused]
        self._paused.update(new)
        fetching = [_rd_tp(tp) for tp in new if tp in self._positions]
        if fetching:
            self._call(self._rd.pause, fetching)

    def resume(self, *partitions: TopicPartition) -> None:
        """Fetch the partitions again, from their positions."""
        self._check()
        back = [tp for tp in partitions if tp in self._paused]
        self._paused.difference_update(back)
        fetching = [tp for tp in back if tp in self._positions]
        if fetching:
            self._call(self._rd.resume, [_rd_tp(tp) for tp in fetching])
            for tp in fetching:
                self._call(self._rd.seek, _rd_tp(tp, self._positions[tp]))

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    # -- records --------------------------------------------------------------------------------

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[RdRecord]]:
        """Records fetched for the partitions that are assigned, seeked and not paused: at most
        ``max_records`` (default ``max_poll_records``, 500), per partition in offset order.
        Returns as soon as any are there, or empty after ``timeout_ms``."""
        self._check()
        self._raise_pending()
        limit = max_records or self._max_records
        consume = self._rd.consume
        try:
            messages = consume(limit, 0)
            if not messages and timeout_ms > 0:
                # consume(n, t) waits until n records or t have passed: wait for one only.
                messages = consume(1, timeout_ms / 1000)
                if messages and limit > 1:
                    messages += consume(limit - 1, 0)
        except confluent_kafka.KafkaException as exc:
            raise translate(exc) from exc
        if not messages:
            return {}
        found = self._records(messages)
        if not found:
            self._raise_pending()
        return found

    def _records(self, messages: list[Any]) -> dict[TopicPartition, list[RdRecord]]:
        out: dict[TopicPartition, list[RdRecord]] = {}
        positions = self._positions
        last: tuple[str, int] | None = None
        tp: TopicPartition | None = None
        run: list[RdRecord] | None = None
        for m in messages:
            error = m.error()
            if error is not None:
                self._note(m, error)
                last = None
                continue
            topic, partition = m.topic(), m.partition()
            if last is None or partition != last[1] or topic != last[0]:
                last = (topic, partition)
                tp = self._tp(topic, partition)
                # Not ours, or paused: fetched before an unassign or a pause took effect.
                ours = tp in positions and tp not in self._paused
                run = out.setdefault(tp, []) if ours else None
            if run is None:
                continue
            offset = m.offset()
            assert tp is not None
            if offset < positions[tp]:  # fetched before a seek took effect
                continue
            run.append(
                RdRecord(
                    topic, partition, offset, m.timestamp()[1], m.key(), m.value(),
                    m.headers() or [],
                )
            )  # fmt: skip
            positions[tp] = offset + 1
        return {tp: records for tp, records in out.items() if records}

    def _note(self, message: Any, error: Any) -> None:
        """An error among the records: kept, raised by the next poll (or this one, if it found
        no record). A position outside the log is reported for its partition."""
        code = error.code()
        if code == RdKafkaError._PARTITION_EOF:
            return
        topic, partition = message.topic(), message.partition()
        if code in OUT_OF_RANGE and topic is not None and partition is not None:
            tp = self._tp(topic, partition)
            position = self._positions.get(tp)
            if position is None or tp in self._paused:
                return  # no longer fetched: nothing to report
            offset = message.offset()
            offset = position if offset is None or offset < 0 else offset
            if offset >= position:  # else it failed before a seek or a poll moved past it
                self._out_of_range[tp] = offset
            return
        if self._failed is None:
            self._failed = translate(error)

    def _raise_pending(self) -> None:
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed
        if self._out_of_range:
            found, self._out_of_range = self._out_of_range, {}
            raise kafka_errors.OffsetOutOfRangeError(found)

    # -- metadata and offsets (kafka-python: see the module) ------------------------------------

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        found = self._query().partitions_for_topic(topic)
        return None if found is None else set(found)

    def topics(self) -> set[str]:
        return set(self._query().topics())

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(self._query().beginning_offsets(list(partitions)))

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(self._query().end_offsets(list(partitions)))

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, Any]:
        return dict(self._query().offsets_for_times(dict(timestamps)))

    # -- life -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close both clients (nothing to commit: no group). Not in a forked child."""
        if self._abandoned:
            return
        try:
            self._rd.close()
        finally:
            if self._queries is not None:
                self._queries.close()

    # -- internals ------------------------------------------------------------------------------

    def _query(self) -> Any:
        if self._queries is None:
            self._queries = self._make_queries(**self._options)
        return self._queries

    def _start(self, tp: TopicPartition, target: Any) -> None:
        self._call(self._rd.incremental_assign, [target])
        if tp in self._paused:
            self._call(self._rd.pause, [target])

    def _assert_assigned(self, tp: TopicPartition) -> None:
        if tp not in self._assigned:
            raise kafka_errors.IllegalStateError(f"{tp} is not assigned")

    def _tp(self, topic: str, partition: int) -> TopicPartition:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp

    @staticmethod
    def _call(method: Callable[[Any], Any], argument: Any) -> None:
        try:
            method(argument)
        except confluent_kafka.KafkaException as exc:
            raise translate(exc) from exc


def rdkafka_consumer(**options: Any) -> RdKafkaConsumer:
    """``RdKafkaConsumer`` with kafka-python's keyword arguments (``Factories.consumer``'s form)."""
    return RdKafkaConsumer(options)
