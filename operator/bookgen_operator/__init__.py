"""The BookGen queue operator: BookGenQueue spec -> Kubernetes objects or local processes, and the autoscaler.

Named bookgen_operator, not operator, so that it never shadows the standard library's `operator`.
"""

__version__ = "0.1.0"
