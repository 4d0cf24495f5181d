"""examples/moe/train.py as a program: the launcher pre-flight and the checkpoint round trip."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "moe" / "train.py"


def _example() -> ModuleType:
    # Imported under another name than __main__, as the launcher imports it for the pre-flight.
    spec = importlib.util.spec_from_file_location("moe_train_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    ("argv", "world", "message"),
    [
        ([], 3, "n_routed_experts=8 is not divisible by the expert-parallel size 3"),
        (
            ["--experts", "6"],
            4,
            "n_routed_experts=6 is not divisible by the expert-parallel size 4",
        ),
        (["--top-k", "9"], 2, "top_k=9 exceeds the 8 experts a token can reach"),
        (["--experts", "6"], 3, "--batch-size 16 is not divisible by the 3 ranks"),
        (["--init-from", "/nonexistent/x.pt"], 2, "--init-from /nonexistent/x.pt: no such file"),
    ],
)
def test_preflight_rejects_what_cannot_run_with_the_numbers_named(
    argv: list[str], world: int, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _example().anyware_preflight(["--steps", "5", *argv], world)


def test_preflight_passes_a_runnable_configuration_and_leaves_bad_syntax_to_the_ranks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = _example()
    assert example.anyware_preflight(["--steps", "5"], 2) is None
    assert example.anyware_preflight(["--experts", "6", "--batch-size", "12"], 3) is None
    # argparse errors are not the launcher's to report; the pre-flight stays silent
    assert example.anyware_preflight(["--no-such-option"], 2) is None
    assert example.anyware_preflight(["--help"], 2) is None
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


SMALL = (
    "--seq-len",
    "32",
    "--d-model",
    "32",
    "--layers",
    "2",
    "--experts",
    "4",
    "--batch-size",
    "8",
)


def _run(
    out: Path, *args: str, nproc: int = 1, shape: tuple[str, ...] = SMALL
) -> dict[str, object]:
    cmd = [sys.executable, "-m", "anyware.cli.main", "run"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    cmd += [str(SCRIPT), *shape, "--eval-batches", "2", "--out", str(out), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(out.read_text())
    return result


@pytest.mark.slow
def test_save_then_init_from_continues_the_same_model_on_one_and_two_ranks(
    tmp_path: Path,
) -> None:
    import torch

    ckpt = str(tmp_path / "w.pt")
    trained = _run(tmp_path / "a.json", "--steps", "6", "--save", ckpt)
    # zero steps from the checkpoint: the same held-out loss, on one rank and on two (each
    # rank loads its own experts from the unsharded file)
    one = _run(tmp_path / "b.json", "--steps", "0", "--init-from", ckpt)
    two = _run(tmp_path / "c.json", "--steps", "0", "--init-from", ckpt, nproc=2)
    assert one["eval_loss"] == trained["eval_loss"]
    assert abs(float(two["eval_loss"]) - float(one["eval_loss"])) < 1e-5  # type: ignore[arg-type]
    # the 1-ulp control: exactly one weight differs, by one ulp
    moved = str(tmp_path / "ulp.pt")
    _run(tmp_path / "d.json", "--steps", "0", "--init-from", ckpt, "--perturb-ulp", "--save", moved)
    a, b = torch.load(ckpt, weights_only=True), torch.load(moved, weights_only=True)
    assert sorted(a) == sorted(b)
    diff = {k: int((a[k] != b[k]).sum()) for k in a}
    assert sum(diff.values()) == 1 and diff["layers.0.attn.wqkv.weight"] == 1
    w0, w1 = a["layers.0.attn.wqkv.weight"][0, 0], b["layers.0.attn.wqkv.weight"][0, 0]
    assert w1 == torch.nextafter(w0, torch.tensor(float("inf")))
    # a checkpoint of another shape: one sentence naming the file, no traceback
    cmd = [sys.executable, "-m", "anyware.cli.main", "run", str(SCRIPT), "--steps", "1"]
    proc = subprocess.run(
        [*cmd, "--init-from", ckpt], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode != 0
    assert f"--init-from {ckpt}: it does not fit this model" in proc.stderr
    assert "Traceback" not in proc.stderr


FP8_BAR = 0.0025  # DeepSeek-V3: FP8 training loss within 0.25% of the high-precision run


@pytest.mark.slow
def test_blockwise_fp8_stays_within_the_bar_at_a_stable_end(tmp_path: Path) -> None:
    """The benchmark's stable-end protocol at a smaller scale (benchmarks/moe/bench_moe.py):
    fp32 trained to the end of its schedule and saved, twice (initial weights and batch order
    from seeds 0 and 1); from each checkpoint the same continuation on one batch stream in fp32
    and under deepseek-blockwise; the gap is the mean of the two paired held-out gaps. One pair
    alone is not enough: at full scale the starting checkpoint moves a recipe's gap by 0.2-0.4%
    (docs/models.md). (One ulp moved at initialisation does not give a second checkpoint:
    AdamW's first steps absorb it.)

    The bar is checked one-sided, as a cost: FP8's held-out loss may not exceed fp32's by more
    than 0.25%. At this scale blockwise lands *below* fp32 on both checkpoints (-0.30% and
    -0.26%, measured), which a two-sided band would count as a miss; a lower loss is not an
    FP8 cost, and docs/models.md reports it as measured."""
    gaps = []
    for k in range(2):
        ckpt = str(tmp_path / f"fp32_{k}.pt")
        _run(
            tmp_path / f"pre{k}.json", "--steps", "300", "--seed", str(k), "--save", ckpt, shape=()
        )
        cont = ("--init-from", ckpt, "--steps", "100", "--lr", "1e-3", "--warmup", "10")
        cont += ("--data-seed", "101", "--eval-batches", "16")
        fp32 = float(_run(tmp_path / f"f{k}.json", *cont, shape=())["eval_loss"])  # type: ignore[arg-type]
        fp8_run = _run(tmp_path / f"q{k}.json", *cont, "--fp8", "deepseek-blockwise", shape=())
        fp8 = float(fp8_run["eval_loss"])  # type: ignore[arg-type]
        assert fp8 != fp32  # FP8 really trained
        gaps.append((fp8 - fp32) / fp32)
    assert gaps[0] != gaps[1]  # two starting points, not one twice
    mean = sum(gaps) / len(gaps)
    assert mean < FP8_BAR, gaps
