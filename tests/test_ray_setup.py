"""Starting Ray beside work that needs none (a virtual stream's index)."""

import threading
import time

import pytest

from streamssl import ray_setup
from streamssl.errors import ConfigError


def test_work_runs_while_ray_starts_and_its_result_comes_back(monkeypatch):
    started = threading.Event()

    def fake_init(address=None):
        assert threading.current_thread() is threading.main_thread()
        started.set()

    def work():
        assert started.wait(10), "the work waited for Ray instead of running beside it"
        return threading.current_thread().name

    monkeypatch.setattr(ray_setup, "init_ray", fake_init)
    assert ray_setup.init_ray_during(work).startswith("streamssl-beside-ray")


def test_the_works_error_wins_and_ray_errors_wait_for_the_work(monkeypatch):
    def failing_init(address=None):
        raise ConfigError("RAY_ADDRESS=x: cannot join")

    monkeypatch.setattr(ray_setup, "init_ray", failing_init)
    with pytest.raises(ValueError, match="bad stream"):
        ray_setup.init_ray_during(lambda: (_ for _ in ()).throw(ValueError("bad stream")))
    finished = []
    with pytest.raises(ConfigError, match="cannot join"):
        ray_setup.init_ray_during(lambda: (time.sleep(0.2), finished.append(True)))
    assert finished == [True]  # the index was written whole before the error surfaced
