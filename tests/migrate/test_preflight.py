"""``anyware run --nproc N``'s pre-flight: a script's ``anyware_preflight(argv, world_size)``
rejects a configuration before any rank starts; scripts without one run as before."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anyware.migrate.launch import (
    PREFLIGHT_MODULE,
    LaunchError,
    RunOptions,
    defines_preflight,
    preflight,
    run,
)

SCRIPTS = Path(__file__).parent / "scripts"
TRAIN = SCRIPTS / "preflight_train.py"


def run_cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def markers(d: Path, prefix: str) -> list[Path]:
    return sorted(d.glob(f"{prefix}*")) if d.is_dir() else []


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("def anyware_preflight(argv, world_size):\n    pass\n", True),
        ("from shapes import check as anyware_preflight\n", True),
        ("import shapes\nanyware_preflight = shapes.check\n", True),
        ("anyware_preflight: object = print\n", True),
        ("def main():\n    def anyware_preflight(a, w): pass\n", False),  # not top level
        ("async def anyware_preflight(a, w):\n    pass\n", False),  # a coroutine checks nothing
        ("anyware_preflight_x = 1\nprint('anyware_preflight')\n", False),
    ],
)
def test_the_hook_is_found_by_parsing(source: str, found: bool) -> None:
    assert defines_preflight(ast.parse(source)) is found


def test_a_rejected_configuration_names_the_numbers_and_runs_no_main(tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = [str(TRAIN), "--experts", "6", "--top-k", "2", "--markers", str(out)]
    path_before, argv_before = list(sys.path), list(sys.argv)
    with pytest.raises(LaunchError) as e:
        preflight(args, str(TRAIN), 4)
    assert str(e.value) == (
        f"{TRAIN}: 6 routed experts cannot be split over 4 expert-parallel ranks (6 is not "
        "divisible by 4); no rank was started"
    )
    # Imported under another name (its main never ran), with the state put back.
    (record,) = [json.loads(p.read_text()) for p in markers(out, "preflight-")]
    assert record == {
        "argv": args[1:],
        "world_size": 4,
        "module": PREFLIGHT_MODULE,
        "pid": os.getpid(),
    }
    assert markers(out, "rank") == []
    assert sys.path == path_before and sys.argv == argv_before
    assert PREFLIGHT_MODULE not in sys.modules and "preflight_shapes" in sys.modules
    sys.modules.pop("preflight_shapes")


def test_an_accepted_configuration_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert preflight([str(TRAIN), "--experts", "8", "--markers", str(out)], "t", 2) is None
    assert len(markers(out, "preflight-")) == 1 and markers(out, "rank") == []
    sys.modules.pop("preflight_shapes", None)


def test_a_script_without_the_hook_is_not_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    script = write(
        tmp_path,
        "plain.py",
        f"""\
        from pathlib import Path
        Path({str(marker)!r}).write_text("ran")
        """,
    )
    assert preflight([str(script)], str(script), 2) is None
    assert not marker.exists()


def test_a_broken_hook_is_one_line_naming_the_script(tmp_path: Path) -> None:
    args = [str(TRAIN), "--markers", str(tmp_path / "m"), "--break-hook"]
    with pytest.raises(LaunchError) as e:
        preflight(args, str(TRAIN), 2)
    msg = str(e.value)
    assert msg.startswith(f"{TRAIN}: the pre-flight check anyware_preflight itself failed")
    assert "KeyError: 'no such key'" in msg and "no rank was started" in msg
    assert "\n" not in msg
    sys.modules.pop("preflight_shapes", None)


def test_an_import_failure_and_a_missing_main_guard(tmp_path: Path) -> None:
    broken = write(
        tmp_path,
        "broken.py",
        """\
        import no_such_module_for_anyware_tests

        def anyware_preflight(argv, world_size):
            pass

        if __name__ == "__main__":
            pass
        """,
    )
    with pytest.raises(LaunchError, match="importing it for the pre-flight check failed"):
        preflight([str(broken)], str(broken), 2)
    unguarded = write(
        tmp_path,
        "unguarded.py",
        """\
        def anyware_preflight(argv, world_size):
            pass

        print("training...")
        """,
    )
    with pytest.raises(LaunchError, match=r"has no `if __name__ == \"__main__\":` block"):
        preflight([str(unguarded)], str(unguarded), 2)


def test_the_hook_may_exit_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(TRAIN), "--markers", str(tmp_path), "--top-k", "two"]
    assert preflight(args, str(TRAIN), 2) == 2  # argparse printed its usage error
    err = capsys.readouterr().err
    assert "invalid int value: 'two'" in err
    assert f"{TRAIN} exited with status 2 during the pre-flight check" in err
    assert preflight([str(TRAIN), "--help"], str(TRAIN), 2) == 0
    assert "--experts" in capsys.readouterr().out
    said = write(
        tmp_path,
        "said.py",
        """\
        import sys

        def anyware_preflight(argv, world_size):
            sys.exit(f"needs an even world, got {world_size}")

        if __name__ == "__main__":
            pass
        """,
    )
    with pytest.raises(LaunchError, match="needs an even world, got 3; no rank was started"):
        preflight([str(said)], str(said), 3)
    sys.modules.pop("preflight_shapes", None)


def test_a_module_run_with_dash_m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pfpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(
        pkg,
        "train.py",
        """\
        def anyware_preflight(argv, world_size):
            if world_size > 2:
                raise ValueError(f"at most 2 ranks, got {world_size} ({argv})")

        if __name__ == "__main__":
            raise SystemExit("main must not run")
        """,
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["-m", "pfpkg.train", "--x"]
    assert preflight(args, "pfpkg.train", 2) is None
    with pytest.raises(LaunchError, match=r"pfpkg.train: at most 2 ranks, got 3 \(\['--x'\]\)"):
        preflight(args, "pfpkg.train", 3)


def test_one_process_skips_the_hook(tmp_path: Path) -> None:
    """With one process the script checks itself: no second import in the launcher."""
    out = tmp_path / "m"
    log = tmp_path / "out.txt"
    with log.open("wb") as f:
        code = run(
            RunOptions(target=[str(TRAIN), "--experts", "5", "--markers", str(out)]),
            quiet=True,
            output=f,
        )
    assert code == 0, log.read_text()
    assert markers(out, "preflight-") == [] and len(markers(out, "rank0-")) == 1


def test_cli_rejects_before_any_rank_starts(tmp_path: Path) -> None:
    out = tmp_path / "m"
    proc = run_cli(
        "run", "--nproc", "2", str(TRAIN), "--experts", "8", "--top-k", "9", "--markers", str(out)
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{TRAIN}: top-k 9 is above the 8 routed experts; no rank was started" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(markers(out, "preflight-")) == 1
    assert markers(out, "rank") == []  # no rank process wrote its marker


@pytest.mark.distributed
def test_cli_accepted_configuration_starts_every_rank(tmp_path: Path) -> None:
    out = tmp_path / "m"
    proc = run_cli("run", "--nproc", "2", str(TRAIN), "--experts", "6", "--markers", str(out))
    assert proc.returncode == 0, proc.stderr
    (pre,) = markers(out, "preflight-")
    assert json.loads(pre.read_text())["world_size"] == 2
    ranks = markers(out, "rank")
    assert sorted(p.name.split("-")[0] for p in ranks) == ["rank0", "rank1"]
    assert all(p.read_text() == f"--experts 6 --markers {out}" for p in ranks)


def test_a_script_without_a_py_suffix(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "train",
        """\
        def anyware_preflight(argv, world_size):
            raise ValueError(f"world {world_size} rejected")

        if __name__ == "__main__":
            pass
        """,
    )
    with pytest.raises(LaunchError, match="world 2 rejected; no rank was started"):
        preflight([str(script)], str(script), 2)


def test_the_moe_example_is_rejected_in_the_launcher() -> None:
    """examples/moe/train.py defines the hook: an unshardable expert count is one line."""
    example = Path(__file__).resolve().parents[2] / "examples" / "moe" / "train.py"
    proc = run_cli("run", "--nproc", "2", str(example), "--experts", "5", "--steps", "1")
    assert proc.returncode == 2, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"anyware: error: {example}: ") and "5" in line
    assert line.endswith("no rank was started")
