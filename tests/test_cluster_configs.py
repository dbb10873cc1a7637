"""Every shipped cluster config parses, has its required keys, and neither exposes Ray nor disables auth."""

from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
CONFIGS = sorted(CLUSTER.glob("*.yaml"))


def mappings(node):
    """Every mapping in a parsed YAML tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from mappings(value)
    elif isinstance(node, list):
        for item in node:
            yield from mappings(item)


def test_all_four_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"aws.yaml", "gcp.yaml", "kuberay-raycluster.yaml",
                                         "kuberay-rayjob.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_required_keys(path):
    config = yaml.safe_load(path.read_text())
    if path.name.startswith("kuberay-"):
        assert config["apiVersion"] == "ray.io/v1" and config["kind"] in ("RayCluster", "RayJob")
        spec = config["spec"] if config["kind"] == "RayCluster" else config["spec"]["rayClusterSpec"]
        head = spec["headGroupSpec"]["template"]["spec"]
        workers = [group["template"]["spec"] for group in spec["workerGroupSpecs"]]
        assert any("nvidia.com/gpu" in c["resources"]["limits"] for w in workers for c in w["containers"])
        for pod in [head, *workers]:  # /dev/shm is memory-backed on every pod
            shm = {v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"}
            mounts = pod["containers"][0]["volumeMounts"]
            assert any(m["mountPath"] == "/dev/shm" and m["name"] in shm for m in mounts)
        if config["kind"] == "RayJob":
            assert config["spec"]["entrypoint"].startswith("python -m streamssl.cli run ")
            assert "--out " in config["spec"]["entrypoint"]
    else:
        assert config["cluster_name"] and config["provider"]["type"] in ("aws", "gcp")
        assert any(o.startswith("--shm-size=") for o in config["docker"]["worker_run_options"])
        assert any("streamssl" in c and "pip install" in c for c in config["setup_commands"])
        assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_nothing_exposed_and_auth_stays_on(path):
    text = path.read_text()
    assert "0.0.0.0" not in text
    config = yaml.safe_load(text)
    maps = list(mappings(config))
    assert not any(m.get("serviceType") in ("LoadBalancer", "NodePort") for m in maps)
    assert not any(m.get("type") in ("LoadBalancer", "NodePort") for m in maps)
    modes = [m.get("value") for m in maps if m.get("name") == "RAY_AUTH_MODE"]
    assert all(mode == "token" for mode in modes)
    assert "RAY_AUTH_MODE=disabled" not in text and "mode: disabled" not in text
    assert modes or "RAY_AUTH_MODE=token" in text  # token auth is switched on explicitly
