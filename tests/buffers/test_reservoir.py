"""Reservoir: after every resize the buffer is a uniform sample of everything inserted."""

import math

import torch

from streamssl.buffers import ReplayBuffer, Reservoir, resize


def _final_members(seed, total=30, capacity=6, b=3):
    buf = ReplayBuffer(capacity, (3, 1, 1), 2, max_batch=b)
    policy, gen = Reservoir(), torch.Generator().manual_seed(seed)
    for step in range(total // b):
        ids = torch.arange(step * b, (step + 1) * b)
        buf.insert(torch.zeros(b, 3, 1, 1, dtype=torch.uint8), [str(i) for i in ids.tolist()], ids)
        resize(buf, policy, gen)
    return buf.labels.tolist()


def test_inclusion_is_uniform_chi_square():
    total, capacity, runs = 30, 6, 1000
    counts = torch.zeros(total)
    for seed in range(runs):
        counts[_final_members(seed, total, capacity)] += 1
    p = capacity / total
    expected = runs * p
    # inclusion counts are binomial(runs, p): scale by (1 - p) for a chi-square with total - 1 dof
    stat = float(((counts - expected) ** 2).sum() / (expected * (1 - p)))
    dof = total - 1
    # Wilson-Hilferty 99.9% quantile of chi-square(dof)
    critical = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3
    assert stat < critical, (stat, critical)
    # early and late items alike (a FIFO would keep only the last 6)
    assert counts[:10].sum() > 0.8 * counts[-10:].sum()


def test_fresh_policy_resumes_from_the_buffer_alone():
    # a policy rebuilt without state (e.g. after a resume) must make the same choices
    first = _final_members(seed=5)
    buf = ReplayBuffer(6, (3, 1, 1), 2, max_batch=3)
    policy, gen = Reservoir(), torch.Generator().manual_seed(5)
    for step in range(10):
        if step == 4:
            policy = Reservoir()
        ids = torch.arange(step * 3, (step + 1) * 3)
        buf.insert(torch.zeros(3, 3, 1, 1, dtype=torch.uint8), [str(i) for i in ids.tolist()], ids)
        resize(buf, policy, gen)
    assert buf.labels.tolist() == first
