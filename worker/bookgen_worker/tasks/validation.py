"""Placeholder: the validation tasks are being written (replace this file)."""
