"""Ray Tune searches over a pipeline (`streamssl tune`): spec, search, trial, leaderboard, plots."""
