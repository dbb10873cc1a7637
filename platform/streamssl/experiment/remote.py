"""`streamssl experiment --address`: the whole experiment runs on a cluster as one Ray job.

The job's working_dir holds the spec with its base pipeline resolved here (`base.yaml`: extends
merged into one file; the per_method blocks and the spec's overrides stay as they are, so every
run resolves exactly as it would locally), and the streamssl package travels as py_modules, as
`streamssl submit` and `streamssl tune --address` ship it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import yaml

from streamssl import config as cfg
from streamssl import fsio
from streamssl.experiment.spec import ExperimentSpec

SPEC_FILE = "experiment.yaml"
BASE_FILE = "base.yaml"


@dataclass(frozen=True)
class ExperimentJob:
    job_id: str
    spec_text: str  # the spec as shipped, base -> base.yaml
    base_text: str
    entrypoint: str
    metadata: dict


def shipped_spec(spec: ExperimentSpec) -> dict:
    """The spec's keys with the base replaced by the shipped file."""
    data = {"base": BASE_FILE, "methods": list(spec.methods), "streams": list(spec.streams),
            "seeds": list(spec.seeds), "overrides": dict(spec.overrides), "grid": dict(spec.grid),
            "max_concurrent": spec.max_concurrent}
    if spec.reference is not None:
        data["reference"] = spec.reference
    return data


def prepare(spec: ExperimentSpec, out: str | None, resume: bool = False) -> ExperimentJob:
    """The job for a validated spec; --out is a cluster path (absolute, or $STREAMSSL_RUNS/JOB_ID)."""
    from streamssl.jobs import run_dir_arg, submission_id
    from streamssl.pipeline import git_sha
    from streamssl.tune.remote import unflatten

    job_id = submission_id(f"experiment-{spec.name}")
    command = (f"python -m streamssl.cli experiment {SPEC_FILE} --out {run_dir_arg(out, job_id)} --no-progress"
               + (" --resume" if resume else ""))
    metadata = {"streamssl_experiment_spec": str(spec.path), "streamssl_out": out or f"$STREAMSSL_RUNS/{job_id}",
                "streamssl_git_sha": git_sha() or ""}
    base_text = yaml.safe_dump(unflatten(cfg.load_flat(spec.base)), sort_keys=False)
    return ExperimentJob(job_id, yaml.safe_dump(shipped_spec(spec), sort_keys=False), base_text, command, metadata)


def submit(client, job: ExperimentJob) -> str:
    """Write the spec and its base into a fresh working_dir and submit; returns the job id."""
    from streamssl.jobs import api_errors, runtime_env

    with tempfile.TemporaryDirectory(prefix="streamssl-experiment-") as folder:
        fsio.write_text(fsio.join(folder, SPEC_FILE), job.spec_text)
        fsio.write_text(fsio.join(folder, BASE_FILE), job.base_text)
        with api_errors(client.get_address()):
            return client.submit_job(entrypoint=job.entrypoint, submission_id=job.job_id,
                                     runtime_env=runtime_env(folder), metadata=job.metadata)
