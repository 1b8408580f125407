"""Placeholder: job orchestration tasks are being written (replace this file)."""
