"""librdkafka (confluent-kafka, the ``[confluent]`` extra) behind the package's consumer and
producer, for clusters configured with ``client_library: confluent``.

``RdKafkaConsumer`` is a ``workers.kafka.consumer.Consumer``: librdkafka fetches, a kafka-python
consumer answers metadata and offset queries. ``RdKafkaProducer`` offers what the package uses
of ``KafkaProducer``. Errors are kafka-python's (``kafka.errors``), so the pull's boundary and
every caller handle them as before. Importing this package imports confluent-kafka.
"""

from __future__ import annotations

from workers.kafka.rdkafka.consumer import RdKafkaConsumer, RdRecord, rdkafka_consumer
from workers.kafka.rdkafka.producer import DeliveryFuture, RdKafkaProducer, rdkafka_producer

__all__ = [
    "DeliveryFuture",
    "RdKafkaConsumer",
    "RdKafkaProducer",
    "RdRecord",
    "rdkafka_consumer",
    "rdkafka_producer",
]
