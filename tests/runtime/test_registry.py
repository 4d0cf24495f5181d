from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from anyware import runtime
from anyware.runtime import registry
from anyware.runtime.backends.cpu import CpuBackend


def test_builtin_names_are_registered() -> None:
    assert runtime.backend_names()[:8] == [
        "cuda",
        "rocm",
        "xpu",
        "npu",
        "mlu",
        "mps",
        "cpu",
        "fake",
    ]


def test_auto_selection_picks_best_available_and_never_fake() -> None:
    # On this machine cpu and fake are available; fake has priority 0 and is never auto-picked.
    chosen = runtime.select()
    available = [b for b in runtime.all_backends() if b.probe().available and b.priority > 0]
    assert chosen.name == max(available, key=lambda b: b.priority).name
    assert chosen.name != "fake"


def test_explicit_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYWARE_DEVICE", "cpu")
    assert runtime.select("fake").name == "fake"


def test_environment_beats_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYWARE_DEVICE", "fake")
    assert runtime.select().name == "fake"


def test_device_index_suffix_is_accepted() -> None:
    assert runtime.select("cpu:0").name == "cpu"
    assert runtime.parse_device("npu:3") == ("npu", 3)
    with pytest.raises(ValueError, match="index after ':'"):
        runtime.parse_device("npu:x")


def test_unknown_name_lists_choices_and_suggests_closest() -> None:
    with pytest.raises(runtime.UnknownBackendError) as info:
        runtime.select("cdua")
    msg = str(info.value)
    assert "'cdua'" in msg and "did you mean 'cuda'?" in msg
    for name in ("cuda", "rocm", "xpu", "npu", "mlu", "mps", "cpu", "fake"):
        assert name in msg
    assert isinstance(info.value, ValueError)


def test_unknown_name_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYWARE_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"^ANYWARE_DEVICE: unknown device backend 'tpu'"):
        runtime.select()


def test_absent_backend_says_why_and_what_is_available() -> None:
    with pytest.raises(runtime.BackendUnavailableError) as info:
        runtime.select("npu")
    msg = str(info.value)
    assert "torch_npu is not installed" in msg
    assert "available: cpu, fake" in msg


def test_register_backend_and_duplicate_guard() -> None:
    class Mine(CpuBackend):
        name = "mine"
        priority = 500

    runtime.register_backend("mine", Mine)
    assert runtime.get_backend("mine").name == "mine"
    assert runtime.select().name == "mine"  # highest priority wins
    with pytest.raises(ValueError, match="already registered"):
        runtime.register_backend("mine", Mine)
    runtime.register_backend("mine", CpuBackend, replace=True)
    assert type(runtime.get_backend("mine")) is CpuBackend
    with pytest.raises(ValueError, match="identifier"):
        runtime.register_backend("bad name", Mine)


def test_factory_must_return_a_backend() -> None:
    runtime.register_backend("broken", lambda: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not a Backend"):
        runtime.get_backend("broken")


def _install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A real installed distribution on sys.path with an `anyware.backends` entry point."""
    pkg = tmp_path / "myvendor_backend.py"
    pkg.write_text(
        textwrap.dedent(
            """
            from anyware.runtime.backends.cpu import CpuBackend

            class VendorBackend(CpuBackend):
                name = "vendor"
                priority = 5
            """
        )
    )
    dist = tmp_path / "myvendor_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myvendor-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[anyware.backends]\n{name} = {value}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._reset_for_tests()


def test_entry_point_backend_is_discovered_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, monkeypatch, "vendor", "myvendor_backend:VendorBackend")
    assert "myvendor_backend" not in sys.modules
    assert "vendor" in runtime.backend_names()
    assert "myvendor_backend" not in sys.modules  # listed, not imported, until asked for
    assert runtime.select("vendor").name == "vendor"
    assert runtime.select().name == "vendor"  # priority 5 beats cpu's 1


def test_broken_entry_point_does_not_hide_working_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, monkeypatch, "ghost", "no_such_module:Nope")
    names = [b.name for b in runtime.all_backends()]
    assert "cpu" in names and "ghost" not in names
    assert "ghost" in registry.plugin_errors()
    assert "ModuleNotFoundError" in registry.plugin_errors()["ghost"]


def test_entry_point_cannot_shadow_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, monkeypatch, "cuda", "myvendor_backend:VendorBackend")
    assert type(runtime.get_backend("cuda")).__name__ == "CudaBackend"
    assert "shadows a built-in" in registry.plugin_errors()["cuda"]


def test_current_is_cached_and_resettable(monkeypatch: pytest.MonkeyPatch) -> None:
    first = runtime.current()
    monkeypatch.setenv("ANYWARE_DEVICE", "fake")
    assert runtime.current() is first  # chosen once per process
    runtime.set_current(None)
    assert runtime.current().name == "fake"
    assert str(runtime.device()) == "cpu"
