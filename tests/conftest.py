"""Shared fixtures: one local Ray per test session, tiny data made in tmp dirs."""

import os

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # read at `import ray`
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_local():
    """A private local Ray shared by every test that needs one."""
    import ray

    from streamssl.ray_setup import init_ray

    init_ray(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_thread():
    """Micro tensors gain nothing from intra-op threads, which stall on a loaded shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, ray_local):
    """A STREAMSSL_DATA root per test module: its datasets and streams are prepared once."""
    root = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("STREAMSSL_DATA", str(root))
    yield root
    mp.undo()


@pytest.fixture
def make_image_folder():
    """make(root, {class: count}, size=8): ROOT/CLASS/NN.png, distinct seeded RGB PNGs; returns root."""
    import io

    import numpy as np
    from PIL import Image

    def make(root, counts: dict, size: int = 8):
        rng = np.random.default_rng(5)
        for name, n in counts.items():
            (root / name).mkdir(parents=True)
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
                (root / name / f"{i:02d}.png").write_bytes(buf.getvalue())
        return root

    return make
