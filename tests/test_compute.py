"""Compute accounting: FLOPs of an update by torch's counter, wait fraction, peak memory."""

import time

import torch
from torch import nn

from streamssl.compute import ComputeMeter, count_flops, peak_rss_bytes


def test_flops_of_a_linear_forward_and_backward_match_the_formula():
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(16, 64)
    with count_flops() as flops:
        layer(x).sum().backward()
    # forward 2*b*in*out; backward: grad of the weight only (x needs no grad) 2*b*in*out
    assert flops.total == 2 * (2 * 16 * 64 * 32)


def test_meter_reports_the_share_of_time_spent_waiting_for_data():
    meter = ComputeMeter(flops_per_update=1000)
    with meter.waiting():
        time.sleep(0.2)
    time.sleep(0.2)
    meter.record(samples=50, updates=3)
    summary = meter.summary(torch.device("cpu"))
    assert 0.3 < summary["data_wait_fraction"] < 0.7
    assert summary["flops_total"] == 3000 and summary["gpu_peak_bytes"] is None
    assert 50 < summary["samples_per_s"] < 200  # 50 samples over ~0.4 s
    assert summary["peak_rss_bytes"] == peak_rss_bytes() > 10 * 2**20
