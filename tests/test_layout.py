import platform
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_platform_is_a_source_root_not_a_package():
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_stdlib_platform_is_not_shadowed():
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(platform.__file__).resolve().parent == stdlib
    assert platform.system()


def test_top_level_folders_have_readmes():
    for folder in ["pipelines", "tune", "cluster", "platform"]:
        assert (ROOT / folder / "README.md").is_file(), folder
