"""The autoscaler: a pure decision core (decide) fed by metric sources and driving a platform.

The loop (autoscaler.loop.Autoscaler) is imported on demand: it pulls in the metric sources.
"""

from bookgen_operator.core.autoscaler.decide import decide
from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Decision, Observation
from bookgen_operator.core.autoscaler.policy import Policy

__all__ = ["Decision", "History", "Observation", "Policy", "decide"]
