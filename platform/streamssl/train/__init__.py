"""Training: the online learner, its per-worker loop, and the drivers that run it."""
