"""BookGen Celery tasks, one module per task type; base.py holds what they share."""
