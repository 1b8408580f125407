"""Pure content logic behind the generation, validation and export tasks (no Celery here)."""
