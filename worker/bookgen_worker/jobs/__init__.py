"""Book jobs: a whole biography as one tracked unit of work."""
