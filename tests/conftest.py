"""Shared fixtures: the one local Ray of the test session, a private Ray head, tiny data in tmp dirs.

Markers (registered in pyproject.toml):
    ray: the test runs on the session's local Ray (`ray_local`), started once for every test that
        carries the marker, unless it asks for the separate cluster `ray_head` instead.
    single_thread: the test runs with one intra-op torch thread (`one_thread`).
    gpu: the test needs CUDA.
"""

import os

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # read at `import ray`
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # as the CLI sets it: no Ray starts by accident
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray Train's controller polls its workers every 2 s by default: each start and end waits on a poll
# (about 9 s per Ray Train run of the suite's tiny pipelines)
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_local():
    """A private local Ray shared by every test that needs one."""
    import ray

    from streamssl.ray_setup import init_ray

    init_ray(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_head():
    """A separate Ray head with the Jobs API on 127.0.0.1 (tests/rayhead.py); yields its URL."""
    from rayhead import running_head

    with running_head() as url:
        yield url


@pytest.fixture
def one_thread():
    """Micro tensors gain nothing from intra-op threads, which stall on a loaded shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _markers(request):
    """What the `ray` and `single_thread` markers promise (see the module docstring)."""
    if request.node.get_closest_marker("ray") and "ray_head" not in request.fixturenames:
        request.getfixturevalue("ray_local")
    if request.node.get_closest_marker("single_thread"):
        request.getfixturevalue("one_thread")


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


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server (moto) on loopback for the whole session; yields its endpoint URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _new_bucket(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import uuid

    import boto3

    env = {"AWS_ENDPOINT_URL": server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = f"streamssl-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server, region_name=env["AWS_REGION"], aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the loopback server, the AWS_* variables pointing at it; yields "s3://NAME"."""
    return _new_bucket(s3_server, monkeypatch)


@pytest.fixture(scope="module")
def module_monkeypatch():
    """A MonkeyPatch for module-scoped fixtures, undone after the module's last test."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def s3_module_bucket(s3_server, module_monkeypatch):
    """`s3_bucket` for a whole test module: what one test writes there (a prepared dataset) serves the next."""
    return _new_bucket(s3_server, module_monkeypatch)
