"""Placeholder: the export tasks are being written (replace this file)."""
