"""Stream reads with fractional CPUs still run when placement groups leave less than one CPU free.

This is the Ray Tune deadlock: two trials' workers and drivers reserved all but 0.98 of the
logical CPUs, and read tasks asking for a whole CPU never started.
"""

import numpy as np
import pytest

from streamssl.bench.stream import write_bench_stream
from streamssl.streams import read_stream

pytestmark = pytest.mark.ray


@pytest.mark.timeout(120)
def test_fractional_reads_run_beside_placement_groups_holding_all_but_half_a_cpu(ray_local, tmp_path):
    from ray.util.placement_group import placement_group, remove_placement_group

    write_bench_stream(str(tmp_path), n=60, size=8, fmt="png", shard_size=20)
    free = ray_local.available_resources().get("CPU", 0)
    group = placement_group([{"CPU": free - 0.5}])
    ray_local.get(group.ready(), timeout=30)
    try:
        rows = read_stream(str(tmp_path), num_cpus=0.25, concurrency=2, chunk_bytes=1 << 10)
        pos = np.concatenate([b["pos"] for b in rows.iter_batches(batch_size=None, batch_format="numpy")])
    finally:
        remove_placement_group(group)
    np.testing.assert_array_equal(pos, np.arange(60))
