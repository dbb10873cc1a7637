"""`streamssl tune --address`: the whole search runs on a cluster as one Ray job.

The job's working_dir holds the spec with its base pipeline resolved here (`base.yaml`: extends,
per_method blocks and the spec's overrides merged into one file), so the cluster needs nothing but
the streamssl package, which travels as py_modules exactly as `streamssl submit` ships it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import yaml

from streamssl import fsio
from streamssl.tune.spec import SearchSpec

SPEC_FILE = "search.yaml"
BASE_FILE = "base.yaml"


@dataclass(frozen=True)
class TuneJob:
    job_id: str
    spec_text: str  # the spec as shipped: base -> base.yaml, overrides folded into it
    base_text: str
    entrypoint: str
    metadata: dict


def unflatten(flat: dict) -> dict:
    """{"a.b": 1, "c": 2} -> {"a": {"b": 1}, "c": 2} (inverse of config.flatten at section depth)."""
    tree: dict = {}
    for key, value in flat.items():
        head, dot, rest = key.partition(".")
        if dot:
            tree.setdefault(head, {})[rest] = value
        else:
            tree[key] = value
    return tree


def prepare(spec: SearchSpec, out: str | None, resume: bool = False) -> TuneJob:
    """The job for a validated spec; --out is a cluster path (absolute, or $STREAMSSL_RUNS/JOB_ID)."""
    from streamssl.jobs import run_dir_arg, submission_id
    from streamssl.pipeline import git_sha

    job_id = submission_id(f"tune-{spec.name}")
    space = {p.key: {p.kind: p.values} for p in spec.space}
    search = {"algorithm": spec.algorithm, "num_samples": spec.num_samples, "metric": spec.metric,
              "mode": spec.mode, "max_concurrent": spec.max_concurrent, "seed": spec.seed,
              "asha": ({"grace": spec.asha.grace, "reduction_factor": spec.asha.reduction_factor}
                       if spec.asha else False)}
    spec_text = yaml.safe_dump({"base": BASE_FILE, "space": space, "search": search}, sort_keys=False)
    command = (f"python -m streamssl.cli tune {SPEC_FILE} --out {run_dir_arg(out, job_id)}"
               + (" --resume" if resume else ""))
    metadata = {"streamssl_tune_spec": str(spec.path), "streamssl_out": out or f"$STREAMSSL_RUNS/{job_id}",
                "streamssl_git_sha": git_sha() or ""}
    return TuneJob(job_id, spec_text, yaml.safe_dump(unflatten(spec.base_flat), sort_keys=False), command,
                   metadata)


def submit(client, job: TuneJob) -> str:
    """Write the spec and its base into a fresh working_dir and submit; returns the job id."""
    from streamssl.jobs import api_errors, runtime_env

    with tempfile.TemporaryDirectory(prefix="streamssl-tune-") as folder:
        fsio.write_text(fsio.join(folder, SPEC_FILE), job.spec_text)
        fsio.write_text(fsio.join(folder, BASE_FILE), job.base_text)
        with api_errors(client.get_address()):
            return client.submit_job(entrypoint=job.entrypoint, submission_id=job.job_id,
                                     runtime_env=runtime_env(folder), metadata=job.metadata)

