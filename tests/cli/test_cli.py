"""The CLI contract: exit codes, one-line errors, the `env --json` schema, `--version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import anyware


def anyware_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("anyware: error: ")
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0]


def test_version() -> None:
    proc = anyware_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"anyware {anyware.__version__}"


def test_env_json_schema() -> None:
    proc = anyware_cli("env", "--json", env={"ANYWARE_FAKE_DEVICES": "2"})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"selected", "backends", "versions", "env"} <= set(doc)
    assert isinstance(doc["selected"], str)
    names = [b["name"] for b in doc["backends"]]
    assert names[:8] == ["cuda", "rocm", "xpu", "npu", "mlu", "mps", "cpu", "fake"]
    for b in doc["backends"]:
        assert isinstance(b["name"], str) and isinstance(b["available"], bool)
        assert isinstance(b["reason"], str) and b["reason"]
        for d in b["devices"]:
            assert isinstance(d["index"], int) and isinstance(d["name"], str)
            assert d["memory_total"] is None or isinstance(d["memory_total"], int)
            assert isinstance(d["capability"], dict) and "dtypes" in d["capability"]
    fake = next(b for b in doc["backends"] if b["name"] == "fake")
    assert [d["index"] for d in fake["devices"]] == [0, 1]
    v = doc["versions"]
    assert set(v) == {"python", "torch", "triton", "anyware"}
    assert v["anyware"] == anyware.__version__
    assert v["triton"] is None or isinstance(v["triton"], str)
    # Other suites' conftests may put TRITON_INTERPRET in this process's environment.
    assert {k: v for k, v in doc["env"].items() if k.startswith("ANYWARE_")} == {
        "ANYWARE_FAKE_DEVICES": "2"
    }


def test_env_table_renders() -> None:
    proc = anyware_cli("env")
    assert proc.returncode == 0, proc.stderr
    assert "selected: cpu" in proc.stdout and "versions:" in proc.stdout


def test_env_honours_device_and_translates_visible_devices() -> None:
    proc = anyware_cli(
        "env", "--json", "--device", "fake",
        env={"ANYWARE_FAKE_DEVICES": "4", "ANYWARE_VISIBLE_DEVICES": "1,3"},
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert doc["selected"] == "fake"
    assert doc["child_env"] == {"ANYWARE_FAKE_VISIBLE_DEVICES": "1,3"}


def test_unknown_device_option() -> None:
    assert_one_line_error(anyware_cli("env", "--device", "gpu"), "'gpu'", "cpu", "cuda")


def test_unknown_device_in_environment() -> None:
    assert_one_line_error(
        anyware_cli("env", env={"ANYWARE_DEVICE": "cudaa"}), "ANYWARE_DEVICE", "did you mean 'cuda'"
    )


def test_absent_device() -> None:
    assert_one_line_error(
        anyware_cli("demo", "--device", "mlu"), "torch_mlu is not installed", "available: cpu"
    )


def test_malformed_visible_devices() -> None:
    assert_one_line_error(
        anyware_cli("env", env={"ANYWARE_VISIBLE_DEVICES": "0,x"}), "ANYWARE_VISIBLE_DEVICES='0,x'"
    )


@pytest.mark.parametrize(
    "args", [["--bogus"], ["env", "--json", "extra"], ["nosuchcommand"], ["env", "--device"]]
)
def test_usage_errors_are_one_line_exit_2(args: list[str]) -> None:
    assert_one_line_error(anyware_cli(*args))


def test_bare_command_prints_help_exit_2() -> None:
    proc = anyware_cli()
    assert proc.returncode == 2 and "Usage:" in proc.stdout and "Traceback" not in proc.stderr


def test_demo_sections_run_and_report_json() -> None:
    proc = anyware_cli("demo", "--only", "environment", "--only", "train", "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["environment"]["backend"] == "cpu"
    assert results["train"]["last_loss"] < results["train"]["first_loss"] - 0.5
