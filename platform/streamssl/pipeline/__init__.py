"""The pipeline: a run from its config to its report, and the data it needs on the way.

`run_pipeline` (pipeline/run.py) prepares the dataset and builds the stream when the cache
(pipeline/datacache.py) lacks them, records provenance (pipeline/provenance.py) and the run's
status (pipeline/lifecycle.py), hands training to `streamssl.train` in this process or through
Ray Train, and writes the report. Nothing in `streamssl.train` imports this package.
"""

from streamssl.pipeline.datacache import ensure_dataset, ensure_stream, stream_args
from streamssl.pipeline.provenance import git_sha, run_info
from streamssl.pipeline.run import find_resume_checkpoint, run_pipeline, uses_ray_train

__all__ = ["ensure_dataset", "ensure_stream", "find_resume_checkpoint", "git_sha", "run_info",
           "run_pipeline", "stream_args", "uses_ray_train"]
