"""The reference alarm pipeline: events → alerts → the output topic, as chained Celery tasks.

Importing ``workers.alarms.tasks`` registers ``workers.alarms.parse``, ``.build``,
``.publish`` and ``.sweep``; ``workers.runtime.setup.setup`` does it for the package's app.
"""
