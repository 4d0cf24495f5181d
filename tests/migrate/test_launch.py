"""``anyware run``: exit status, the report contract, --strict, children and ranks, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 180
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *args],
        capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout,
    )  # fmt: skip


def test_exit_status_report_and_summary(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """\
            import sys
            import torch
            assert torch.cuda.is_available()
            x = torch.randn(4, 4).cuda()
            m = torch.nn.Linear(4, 2).to("cuda:0")
            print("out", m(x).shape, x.is_cuda, flush=True)
            sys.exit(3)
            """
        )
    )
    report = tmp_path / "r.json"
    proc = run_cli("run", "--report", str(report), "python", str(script))
    assert proc.returncode == 3, proc.stderr
    assert "out torch.Size([4, 2]) True" in proc.stdout
    data = json.loads(report.read_text())
    assert set(data) == {"device", "redirects", "unsupported"}
    assert data["device"] == "cpu" and data["unsupported"] == []
    by_api = {r["api"]: r for r in data["redirects"]}
    assert by_api["Tensor.cuda"] == {"api": "Tensor.cuda", "count": 1, "locations": [f"{script}:4"]}
    assert by_api["Module.to('cuda')"]["locations"] == [f"{script}:5"]
    assert "anyware migrate: ran on cpu" in proc.stderr


def test_strict_error_shows_the_users_frames(tmp_path: Path) -> None:
    script = tmp_path / "f64.py"
    script.write_text(
        "import torch\n\ndef make():\n    return torch.ones(2, dtype=torch.float64, device='cuda')\n\nmake()\n"
    )
    report = tmp_path / "r.json"
    proc = run_cli("run", "--device", "fake", "--strict", "--report", str(report), str(script))
    assert proc.returncode == 1
    assert "MigrationError" in proc.stderr and "float64" in proc.stderr
    tb = proc.stderr.split("Traceback", 1)[1]
    assert f'File "{script}", line 4, in make' in tb
    assert "anyware" + os.sep + "migrate" not in tb  # the shim's frames are trimmed
    data = json.loads(report.read_text())
    assert data["device"] == "fake"
    assert [u["api"] for u in data["unsupported"]] == ["torch.ones(device=...) (float64)"]


def test_without_strict_float64_is_demoted_and_reported(tmp_path: Path) -> None:
    script = tmp_path / "f64.py"
    script.write_text(
        "import torch\nprint(torch.ones(2, dtype=torch.float64, device='cuda').dtype)\n"
    )
    proc = run_cli("run", "--device", "fake", str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "torch.float32"
    assert "not honoured: torch.ones(device=...) (float64)" in proc.stderr


def test_children_get_the_shim(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = run_cli("run", "--report", str(report), str(SCRIPTS / "children.py"), "forkserver")
    assert proc.returncode == 0, proc.stderr
    assert "process cpu:True" in proc.stdout
    assert "loader [2.0, 2.0]" in proc.stdout  # workers saw is_available() True
    assert "mp.spawn rank0:cpu" in proc.stdout
    apis = {r["api"]: r["count"] for r in json.loads(report.read_text())["redirects"]}
    assert apis["Tensor.cuda"] == 1 and apis["torch.zeros(device=...)"] == 1  # from children
    assert apis["torch.full(device=...)"] == 4


@pytest.mark.distributed
def test_nproc_launches_ranks_through_torchrun(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = run_cli("run", "--nproc", "2", "--report", str(report), str(SCRIPTS / "ddp_train.py"))
    assert proc.returncode == 0, proc.stderr
    for rank in (0, 1):
        assert f"rank {rank} step 2 loss" in proc.stdout
    assert "backend gloo" in proc.stdout
    apis = {r["api"]: r["count"] for r in json.loads(report.read_text())["redirects"]}
    assert apis["torch.distributed.init_process_group('nccl')"] == 2
    assert apis["DistributedDataParallel(device_ids=...)"] == 2


@pytest.mark.distributed
def test_nproc_failed_rank_is_named_and_its_status_is_the_jobs(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text(
        "import os, sys\n"
        "if os.environ['RANK'] == '1':\n"
        "    print('experts 5 not divisible by 2', file=sys.stderr)\n"
        "    sys.exit(4)\n"
    )
    proc = run_cli("run", "--nproc", "2", str(script))
    assert proc.returncode == 4, proc.stderr
    assert "experts 5 not divisible by 2" in proc.stderr
    assert "anyware run: rank 1 (pid " in proc.stderr and "exit status 4" in proc.stderr
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr


def test_module_target_chains_existing_sitecustomize_and_waits_for_torch(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['USER_SITE_RAN'] = '1'\n")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(
        "import os, sys\n"
        "print('site', os.environ.get('USER_SITE_RAN'), 'torch-before', 'torch' in sys.modules)\n"
        "import torch\n"
        "print('cuda', torch.cuda.is_available(), sys.argv[1:])\n"
    )
    proc = run_cli(
        "run", "-m", "pkg.main", "--flag", "x",
        cwd=tmp_path, env={"PYTHONPATH": f"{site}{os.pathsep}{tmp_path}"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "site 1 torch-before False" in proc.stdout
    assert "cuda True ['--flag', 'x']" in proc.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.py"], "script 'missing.py' not found"),
        (["-m", "no_such_mod_xyz"], "module 'no_such_mod_xyz' not found"),
        (["--device", "nosuch", "x.py"], "unknown device backend 'nosuch'"),
        (["--device", "rocm", "x.py"], "not available here"),
        (["--nproc", "0", "x.py"], "--nproc must be at least 1"),
        ([], "give a script to run"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "x.py").write_text("print('ran')\n")
    proc = run_cli("run", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr and "ran" not in proc.stdout


def test_syntax_error_shows_the_users_error(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("x = (\n")
    proc = run_cli("run", "bad.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "bad.py does not compile, nothing was run" in proc.stderr
    assert "SyntaxError" in proc.stderr and "Traceback" not in proc.stderr
