"""The Kafka side: the consumer protocol pulls read with (``consumer``), records decoded into
the messages stages receive (``codecs``), the dead-letter topic (``deadletter``), offsets
committed under a group without joining it (``group_offsets``), and the origin's
``KafkaQueue`` (``queue``, ``queue_io``)."""
