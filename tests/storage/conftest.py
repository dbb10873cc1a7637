"""Working directories for the object-storage tests: empty but for the cache, so a test can check
that nothing else of a run with URI paths reached the local disk."""

import pytest


def _bare(folder, monkeypatch: pytest.MonkeyPatch):
    cwd = folder / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("STREAMSSL_CACHE", str(cwd / "cache"))
    return cwd


@pytest.fixture
def bare_cwd(tmp_path, monkeypatch):
    """An empty working directory whose only allowed entry is the cache."""
    return _bare(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def bare_module_cwd(tmp_path_factory, module_monkeypatch):
    """`bare_cwd` for a whole test module (its module-scoped fixtures run in it too)."""
    return _bare(tmp_path_factory.mktemp("bare"), module_monkeypatch)
