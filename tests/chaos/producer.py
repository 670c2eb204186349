"""Topics of a chaos run, and a background producer that sends the workload at a steady rate,
re-sending what a broker restart made fail (a re-sent event keeps its event id)."""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaProducer
from kafka.errors import KafkaError

from tests.chaos.workload import Workload

logger = logging.getLogger(__name__)


class Producer(threading.Thread):
    """Sends ``records`` values of ``workload`` to ``topic`` at ``rate`` per second, a tick's
    worth at a time (large produce batches keep an S3-backed broker fast). Keeps the highest
    acknowledged offset per partition: the input's log end, whatever ``end_offsets`` says."""

    def __init__(self, bootstrap: str, topic: str, workload: Workload, records: int,
                 rate: float, tick: float = 0.5) -> None:  # fmt: skip
        super().__init__(name="chaos-producer", daemon=True)
        self.bootstrap, self.topic, self.workload = bootstrap, topic, workload
        self.records, self.rate, self.tick = records, rate, tick
        self.acked = 0
        self.resent = 0
        self.last: dict[int, int] = {}
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(60)

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=100, retries=5,
            retry_backoff_ms=500, request_timeout_ms=15_000, enable_idempotence=False,
            max_block_ms=60_000,
        )  # fmt: skip
        try:
            self._produce(producer)
        except BaseException as exc:  # noqa: BLE001 - reported by the run, not lost in a thread
            self.error = exc
            logger.exception("producer failed")
        finally:
            producer.close(timeout=10)
            self.finished.set()

    def _produce(self, producer: KafkaProducer) -> None:
        made, retry = 0, []  # (value, key) pairs whose send failed: sent again
        started = time.monotonic()
        while (made < self.records or retry) and not self._halt.is_set():
            due = min(self.records, int((time.monotonic() - started + self.tick) * self.rate))
            items = retry + [self.workload.next()[:2] for _ in range(max(0, due - made))]
            made = max(made, due)
            retry = []
            futures = [(producer.send(self.topic, value=v, key=k), (v, k)) for v, k in items]
            try:
                producer.flush(timeout=60)
            except KafkaError as exc:  # what did not make it is sent again below
                logger.warning("flush failed: %r", exc)
            for future, item in futures:
                try:
                    meta = future.get(timeout=1)
                except KafkaError as exc:
                    logger.warning("send failed, sending again: %r", exc)
                    retry.append(item)
                    continue
                self.acked += 1
                self.last[meta.partition] = max(self.last.get(meta.partition, -1), meta.offset)
            self.resent += len(retry)
            if retry:
                time.sleep(1.0)
            time.sleep(max(0.0, started + made / self.rate - time.monotonic()))
