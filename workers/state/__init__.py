"""Everything kept in Redis, under one hash tag per (cluster, group, topic): key names
(``keys``), committed offsets (``offsets``), partition leases (``leases``), the batches in
flight (``ledger``), consumer slots (``slots``), pull counters (``stats``) and the record of
Kafka's copy of the offsets (``copies``); their
in-process twins (``local``); and where redis-py errors enter (``redis_errors``)."""
