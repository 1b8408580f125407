"""BookGen: the Celery task system that writes biographies (queues, tasks, jobs, dead letters, metrics)."""

__version__ = "0.1.0"
