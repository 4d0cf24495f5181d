"""`import anyware` stays cheap and never touches a device (STYLE rule 6)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys, importlib
for name in {modules!r}:
    importlib.import_module(name)
heavy = [m for m in ("torch", "triton", "numpy", "pyarrow", "polars", "fastapi", "libcst") if m in sys.modules]
print(json.dumps(heavy))
"""


@pytest.mark.parametrize(
    "modules",
    [
        ["anyware"],
        ["anyware.runtime", "anyware.runtime.accelerator", "anyware._env", "anyware.events"],
        ["anyware.cli.main"],
    ],
)
def test_imports_pull_in_no_heavy_package(modules: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == []


def test_selecting_a_backend_initialises_no_device() -> None:
    code = (
        "import anyware.runtime as r, torch\n"
        "r.current(); [b.probe() for b in r.all_backends()]\n"
        "print(torch.cuda.is_initialized() if hasattr(torch, 'cuda') else False)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom anyware.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip().splitlines()[-1] == "False"
