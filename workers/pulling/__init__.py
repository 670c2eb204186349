"""The pull path, in the order of a cycle: positions (``positions``), re-drives of overdue
batches (``redrive``), the cycle itself (``puller``: poll, decode, record in the ledger), the
hand-off to Celery with its ticket (``handoff``, ``tickets``); the wiring on a process's
connections (``engine``), the Celery tasks that run it (``tasks``), the backoff of failing
pulls (``failures``), and Kafka's copy of the committed offsets (``kafka_copy``)."""
