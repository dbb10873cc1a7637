"""How many runs an experiment keeps in flight, and the DIR checks made before any work (no Ray)."""

import pytest

from streamssl.errors import ConfigError, StreamSSLError
from streamssl.experiment.schedule import STATE_FILE, Footprint, check_out, runs_at_once
from streamssl.experiment.spec import ExperimentSpec


def spec(max_concurrent):
    return ExperimentSpec(path=None, base=None, methods=("imai",), streams=("seq",), seeds=(0,),
                          max_concurrent=max_concurrent)


def test_runs_in_flight_leave_a_cpu_for_stream_reads():
    one_cpu = Footprint(1.0, 1.0, 0.0)
    assert runs_at_once(spec(2), one_cpu, {"CPU": 4.0}) == 2
    assert runs_at_once(spec(8), one_cpu, {"CPU": 4.0}) == 3  # 3 runs + 1 CPU of reads
    assert runs_at_once(spec(8), Footprint(0.01, 2.01, 0.0), {"CPU": 16.0}) == 7
    with pytest.raises(ConfigError, match="learner.threads / scaling: a run holds 4 CPUs"):
        runs_at_once(spec(1), Footprint(4.0, 4.0, 0.0), {"CPU": 4.0})


def test_gpu_runs_need_and_share_the_cluster_gpus():
    gpu_run = Footprint(0.01, 1.01, 1.0)
    with pytest.raises(ConfigError, match="scaling.use_gpu: a run needs 1 GPU, the cluster has 0"):
        runs_at_once(spec(2), gpu_run, {"CPU": 16.0})
    assert runs_at_once(spec(4), gpu_run, {"CPU": 16.0, "GPU": 2.0}) == 2


def test_out_dir_checks(tmp_path):
    check_out(tmp_path / "new", resume=False)  # nothing there: fine
    with pytest.raises(StreamSSLError, match="holds no experiment to resume"):
        check_out(tmp_path / "new", resume=True)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / STATE_FILE).write_text("{}")
    with pytest.raises(StreamSSLError, match="already holds an experiment; pass --resume"):
        check_out(tmp_path / "old", resume=False)
    check_out(tmp_path / "old", resume=True)
