"""`bookgen up`: the whole system on one machine (Redis, worker pools, beat, Flower, autoscaler)."""
