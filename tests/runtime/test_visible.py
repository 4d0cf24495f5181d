from __future__ import annotations

import pytest

from anyware import runtime


@pytest.mark.parametrize("spec", ["", "a", "0,,1", "-1", "0;1", "1.5"])
def test_malformed_visible_devices_name_the_value(spec: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        runtime.parse_visible(spec)


def test_duplicates_are_rejected() -> None:
    with pytest.raises(ValueError, match="twice"):
        runtime.parse_visible("1,1")


def test_translation_into_the_backend_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYWARE_FAKE_DEVICES", "4")
    fake = runtime.get_backend("fake")
    assert runtime.child_env(fake, " 0, 2") == {"ANYWARE_FAKE_VISIBLE_DEVICES": "0,2"}
    monkeypatch.setenv("ANYWARE_VISIBLE_DEVICES", "3")
    assert runtime.child_env(fake) == {"ANYWARE_FAKE_VISIBLE_DEVICES": "3"}
    with pytest.raises(ValueError, match=r"names device\(s\) \[5\].*4 device\(s\)"):
        runtime.child_env(fake, "1,5")


def test_unset_means_no_change() -> None:
    assert runtime.child_env(runtime.get_backend("cpu")) == {}


def test_single_device_backends_accept_index_zero_only() -> None:
    cpu = runtime.get_backend("cpu")
    assert runtime.child_env(cpu, "0") == {}
    with pytest.raises(ValueError, match="1 device"):
        runtime.child_env(cpu, "1")
