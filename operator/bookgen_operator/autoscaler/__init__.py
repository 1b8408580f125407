"""The autoscaler: a pure decision core (decide) fed by metric sources and driving a platform."""
