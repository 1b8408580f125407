"""Placeholder: the generation tasks are being written (replace this file)."""
