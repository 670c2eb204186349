"""How Celery processes run the pipelines: ``setup(app)`` (the tasks, the Beat schedule, the
worker step) in ``setup``; graceful stop of long-lived consumers (``shutdown``); secrets kept
out of logs (``logmask``); and a fix for kombu's Redis transport (``kombu_redis``)."""
