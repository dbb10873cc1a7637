"""Training: the online learner, its per-worker loop, one worker's session, and Ray Train around them."""
