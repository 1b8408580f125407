"""Actuators: make N workers of a pool exist, on Kubernetes (kubernetes.py) or on this machine (local.py)."""
