"""Fault-injection ("chaos") harness for the alarm pipeline: real services, real Celery workers,
seeded faults, and a report computed from ground truth (the topics read back and Redis).

Run it with ``python -m tests.chaos --help``; ``tests/integration/test_chaos.py`` runs a short
seeded round per mode. Modules, in the order a run uses them: ``settings`` (what to run),
``services`` / ``postgres`` / ``brokers`` (Redis with AOF, the Kafka-protocol broker),
``fleet`` (Celery workers and beat), ``workload`` / ``producer`` (alarm events at a rate),
``faults`` (what is injected, when), ``trace`` (the Celery broker's traffic), ``drain``,
``truth`` / ``expect`` / ``report`` / ``explain`` / ``table`` (what happened, and why), and
``run`` (all of it, stopped at the end whatever happens).
"""
