"""`streamssl experiment`: a matrix of seeded runs (methods x streams x grid x seeds) on Ray, with
per-cell confidence intervals and seed-paired tests against a reference method.

Modules: `spec` (the spec file, validated with no Ray import), `schedule` (data preparation and the
Ray task per run), `stats` (pure statistics), `results` (the runs as results, grouped by cell),
`outputs` (summary.csv, comparisons.csv and the files below), `render` (report.md), `figure`
(knn_vs_progress.png), `remote` (the whole experiment as one Ray job on a cluster).
"""
