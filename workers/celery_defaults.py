"""The Celery settings the package's guarantees rest on. Import them into a config module and
set the rest (broker, queues, ``workers_*``) after them::

    from workers.celery_defaults import *  # noqa: F403

- JSON only: records never travel pickled, and a worker refuses anything else.
- ``task_acks_late`` and ``task_reject_on_worker_lost``: a batch whose worker died is
  delivered again (at least once; the alarm stages are idempotent by record id).
- ``worker_prefetch_multiplier = 1``: a worker busy with a long batch (or a long-lived
  consumer) does not hold other messages it cannot start.
- ``broker_connection_retry_on_startup``: a worker that starts before its broker waits for it.

On an AMQP broker (RabbitMQ) ``setup(app)`` also turns on publisher confirms
(``broker_transport_options["confirm_publish"]``, see ``workers.runtime.kombu_amqp``): that
depends on the broker URL, so it is no constant here. The rest holds for both brokers: with
late acks RabbitMQ requeues a dead worker's messages when its connection closes, as Redis does
after ``visibility_timeout``.
"""

__all__ = [
    "task_serializer",
    "result_serializer",
    "accept_content",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "broker_connection_retry_on_startup",
]

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True
