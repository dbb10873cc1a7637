"""`streamssl bench gpu`: one line and exit 0 without a GPU; its checks run (on the CPU, gloo) in CI."""

import subprocess
import sys

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the GPU-less message")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    out = subprocess.run([sys.executable, "-m", "streamssl.cli", "bench", "gpu"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "no CUDA GPU visible to torch (torch.cuda.is_available() is False): nothing to check"]


def test_the_checks_pass_as_a_cpu_dry_run():
    # --skip-ray: the Ray Train check is run_pipeline(trainer="ray"), which tests/integration cover;
    # it would add a minute to the suite
    out = subprocess.run([sys.executable, "-m", "streamssl.cli", "bench", "gpu", "--cpu-dry-run", "--skip-ray"],
                         capture_output=True, text=True, timeout=280)
    lines = [line for line in out.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(lines) == 3 and all(line.startswith("ok") for line in lines), lines
