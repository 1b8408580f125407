"""Placeholder: the monitoring tasks are being written (replace this file)."""
