"""``anyware ops list`` / ``anyware ops bench``: tables, JSON twins and one-line errors."""

from __future__ import annotations

import json

import pytest

from anyware.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ops", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    names = {r["name"] for r in rows}
    assert {"matmul", "flash_attention", "embedding_bag"} <= names
    for r in rows:
        assert set(r) == {"name", "impls", "active", "reason"}
        assert r["active"] == "reference" and "cpu" in r["reason"]


def test_list_follows_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANYWARE_OPS_IMPL", "triton")  # the interpreter is on in these tests
    code, out, _ = _run(capsys, "ops", "list", "--json")
    assert code == 0 and {r["active"] for r in json.loads(out)} == {"triton"}
    code, out, _ = _run(capsys, "ops", "list")
    assert code == 0 and "flash_attention" in out and "triton" in out


def test_bad_env_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANYWARE_OPS_IMPL", "trtion")
    code, _, err = _run(capsys, "ops", "list")
    assert code == 2 and "Did you mean 'triton'" in err and "Traceback" not in err


def test_bench_json_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ops", "bench", "--op", "swiglu", "--reps", "1", "--json", "-")
    assert code == 0
    res = json.loads(out)["results"]
    assert res[0]["op"] == "swiglu" and res[0]["unit"] == "GB/s" and res[0]["aten"] > 0
    assert res[0]["triton"] is None and "interpreter" in res[0]["note"]


def test_bench_unknown_op(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ops", "bench", "--op", "swigl")
    assert code == 2 and "Did you mean 'swiglu'" in err
