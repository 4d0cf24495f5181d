"""Real-world corpus: public CUDA-written scripts, unmodified, under ``anyware run`` on this
machine, and again under plain ``python`` after ``anyware migrate fix``.

    python benchmarks/migration/corpus.py setup          # venv (torch 2.14.1 + torchvision 0.29.1)
    python benchmarks/migration/corpus.py run [--only NAME ...] [--mode shim|fixed|control|all]

Sources come from local git mirrors (``--mirrors``, default ``/work/.mirror``; one
``<owner>+<name>/repo`` per repository) at the commits below and are extracted under
``runs/corpus/`` (git-ignored): fetched code is never committed. Each case names the command,
the data the harness fabricates, and a success pattern that proves training progressed (an
exit status of 0 alone proves nothing: ``mp.spawn(nprocs=0)`` exits 0 without training).
Results go to ``runs/corpus/results.json`` and a pass table on stdout.

A case that fails both ways may carry a ``Control``: the script run on plain cpu torch with
anyware nowhere in the process (``_control.py``; CUDA hidden; only the edits the script needs
to start without a GPU, applied as text and shown in the log). When the control fails with the
same signature, the failure is the script's own (an upstream bug), recorded as ``upstream``
with the evidence, not as a migration failure. Mode ``patched`` then runs the script under
``anyware run`` with only that bug fixed, to show the migration itself works.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data
from _fetch import extract

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "runs" / "corpus"
VENV = WORK / "venv"
PY = str(VENV / "bin" / "python")
REQUIREMENTS = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "numpy",
    "typer",
    "rich",
    "libcst",
    "requests",
    # distributed/minGPT-ddp: hydra for its config, boto3 imported at the top of trainer.py
    "hydra-core",
    "boto3",
]

REPOS: dict[str, tuple[str, str]] = {
    "examples": ("pytorch+examples", "6967ff5"),
    "nanoGPT": ("karpathy+nanoGPT", "3adf61e"),
    "TCN": ("locuslab+TCN", "2f8c2b8"),
    "PyTorch-GAN": ("eriklindernoren+PyTorch-GAN", "36d3c77"),
    "resnet_cifar10": ("akamaster+pytorch_resnet_cifar10", "d5489e8"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One command of a case (a case may need two: train then sample, run then resume)."""

    cwd: str
    """Directory inside the repository copy."""
    argv: list[str]
    """Script (or ``-m module``) and its arguments."""
    success: str
    """Regex the output must match: evidence of training progress."""
    nproc: int = 1
    """Ranks for ``anyware run --nproc`` (plain runs use torchrun too)."""
    fix: tuple[str, ...] = ()
    """Files (relative to ``cwd``) ``anyware migrate fix`` rewrites for the plain-python run."""
    user_choice: tuple[str, ...] = ()
    """Arguments that ask for CUDA by name (``--device=cuda``): user configuration, not code,
    so the plain-python run after ``fix`` leaves them out and takes the script's default."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Control:
    """Run the case's (single) step on plain cpu torch with no anyware, to prove a failure is
    the script's own."""

    signature: str
    """Regex of the failure; a shim or fixed run failing with it is recorded as ``upstream``."""
    evidence: str
    """Regex the control's output must also show (where the failure comes from)."""
    verdict: str
    """One sentence for the pass table's note."""
    edits: tuple[tuple[str, str, str], ...] = ()
    """(file, old, new): the least the script needs to start without a GPU; each must match
    exactly once (so a changed upstream file fails loudly instead of silently)."""
    upstream_fix: tuple[tuple[str, str, str], ...] = ()
    """(file, old, new): a fix of the script's own bug; mode ``patched`` runs the script with
    only this edit under ``anyware run``, to show the migration itself then works."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    repo: str
    steps: list[Step]
    prepare: Callable[[Path], None] = lambda root: None
    env: dict[str, str] = field(default_factory=dict)
    control: Control | None = None


def _cases() -> list[Case]:
    ex = "examples"
    gan = ["--n_epochs", "1", "--batch_size", "64", "--sample_interval", "1000"]
    mn = lambda root: _data.mnist(root / "data" / "mnist")  # noqa: E731
    return [
        Case(name="imagenet", repo=ex, prepare=lambda r: _data.image_folder(r / "imagenet" / "data", PY),
             steps=[Step(cwd="imagenet", argv=["main.py", "-a", "resnet18", "--epochs", "1", "-b", "4", "-j", "0", "-p", "1", "data"],
                         success=r"Epoch: \[0\]\[\s*1/\s*\d+\]", fix=("main.py",))]),
        Case(name="imagenet --gpu 0", repo=ex, prepare=lambda r: _data.image_folder(r / "imagenet" / "data", PY),
             steps=[Step(cwd="imagenet", argv=["main.py", "-a", "resnet18", "--epochs", "1", "-b", "4", "-j", "0", "-p", "1", "--gpu", "0", "data"],
                         success=r"Epoch: \[0\]\[\s*1/\s*\d+\]", fix=("main.py",))]),
        Case(name="dcgan", repo=ex,
             steps=[Step(cwd="dcgan", argv=["main.py", "--dataset", "fake", "--cuda", "--dry-run", "--niter", "1", "--batchSize", "4", "--ngf", "8", "--ndf", "8", "--workers", "0", "--outf", "out"],
                         success=r"\[0/1\]\[0/\d+\] Loss_D", fix=("main.py",))]),
        # main.py/generate.py pickle the whole model and reload it with a bare torch.load, which
        # torch >= 2.6 refuses by default on any device (weights_only=True): torch's own switch
        # restores the old default; it is not a migration matter.
        Case(name="word_language_model", repo=ex, prepare=lambda r: _data.text_corpus(r / "word_language_model" / "data" / "tiny"),
             env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
             steps=[Step(cwd="word_language_model", argv=["main.py", "--cuda", "--data", "data/tiny", "--epochs", "1", "--emsize", "16", "--nhid", "16", "--bptt", "10", "--batch_size", "4", "--log-interval", "5", "--save", "model.pt"],
                         success=r"end of epoch\s+1", fix=("main.py", "model.py", "data.py")),
                    Step(cwd="word_language_model", argv=["generate.py", "--cuda", "--data", "data/tiny", "--checkpoint", "model.pt", "--words", "20", "--log-interval", "10"],
                         success=r"Generated 10/20 words", fix=("generate.py",))]),
        Case(name="mnist_hogwild", repo=ex, prepare=lambda r: _data.mnist(r / "data"),
             steps=[Step(cwd="mnist_hogwild", argv=["main.py", "--cuda", "--epochs", "1", "--num-processes", "2", "--batch-size", "16", "--log-interval", "2", "--dry-run"],
                         success=r"Train Epoch: 1 \[", fix=("main.py", "train.py"))]),
        Case(name="ddp multigpu", repo=ex,
             steps=[Step(cwd="distributed/ddp-tutorial-series", argv=["multigpu.py", "2", "1", "--batch_size", "256"],
                         success=r"\[GPU0\] Epoch 1 \| Batchsize: 256", fix=("multigpu.py", "datautils.py"))]),
        Case(name="ddp multigpu_torchrun x2 (resume)", repo=ex,
             steps=[Step(cwd="distributed/ddp-tutorial-series", argv=["multigpu_torchrun.py", "2", "1", "--batch_size", "256"], nproc=2,
                         success=r"\[GPU1\] Epoch 1 \| Batchsize: 256", fix=("multigpu_torchrun.py",)),
                    Step(cwd="distributed/ddp-tutorial-series", argv=["multigpu_torchrun.py", "3", "1", "--batch_size", "256"], nproc=2,
                         success=r"Resuming training from snapshot at Epoch 1(.|\n)*Epoch 2 \| Batchsize", fix=("multigpu_torchrun.py",))]),
        # Hydra overrides shrink the model and point the dataset at a fabricated text file (the
        # config's default is a URL); one DataLoader worker per rank so worker processes run too.
        Case(name="minGPT-ddp --nproc 2", repo=ex, prepare=lambda r: _data.char_text(r / "distributed" / "minGPT-ddp" / "mingpt" / "data" / "tiny.txt"),
             steps=[Step(cwd="distributed/minGPT-ddp/mingpt", argv=["main.py", "data_config.path=data/tiny.txt", "data_config.block_size=32", "data_config.truncate=1.0", "gpt_config.n_layer=2", "gpt_config.n_head=2", "gpt_config.n_embd=32", "trainer_config.max_epochs=1", "trainer_config.batch_size=16", "trainer_config.data_loader_workers=1", "trainer_config.save_every=1"], nproc=2,
                         success=r"\[GPU1\] Epoch 1 \| Iter 100 \| Train Loss [0-9.]+(.|\n)*Snapshot saved at epoch 1", fix=("main.py", "trainer.py", "model.py", "char_dataset.py"))]),
        Case(name="nanoGPT train", repo="nanoGPT", prepare=lambda r: _data.shakespeare_char(r / "data" / "shakespeare_char", PY),
             steps=[Step(cwd=".", argv=["train.py", "config/train_shakespeare_char.py", "--device=cuda", "--compile=False", "--max_iters=6", "--eval_interval=5", "--eval_iters=2", "--log_interval=1", "--batch_size=4", "--block_size=32", "--n_layer=2", "--n_head=2", "--n_embd=32", "--lr_decay_iters=6", "--always_save_checkpoint=True"],
                         success=r"iter 5: loss [0-9.]+", fix=("train.py", "model.py"), user_choice=("--device=cuda",)),
                    Step(cwd=".", argv=["sample.py", "--out_dir=out-shakespeare-char", "--device=cuda", "--compile=False", "--num_samples=1", "--max_new_tokens=20"],
                         success=r"---------------", fix=("sample.py",), user_choice=("--device=cuda",))]),
        Case(name="nanoGPT train --nproc 2", repo="nanoGPT", prepare=lambda r: _data.shakespeare_char(r / "data" / "shakespeare_char", PY),
             steps=[Step(cwd=".", argv=["train.py", "config/train_shakespeare_char.py", "--device=cuda", "--compile=False", "--max_iters=4", "--eval_interval=100", "--eval_iters=2", "--log_interval=1", "--batch_size=4", "--block_size=32", "--n_layer=2", "--n_head=2", "--n_embd=32", "--gradient_accumulation_steps=2"], nproc=2,
                         success=r"iter 3: loss [0-9.]+", fix=("train.py", "model.py"), user_choice=("--device=cuda",))]),
        Case(name="TCN adding_problem", repo="TCN",
             steps=[Step(cwd="TCN/adding_problem", argv=["add_test.py", "--epochs", "1", "--batch_size", "5000", "--seq_len", "20", "--levels", "2", "--nhid", "8", "--ksize", "3", "--log-interval", "2"],
                         success=r"Train Epoch:\s+1 \[", fix=("add_test.py", "model.py", "utils.py"))]),
        Case(name="TCN copy_memory", repo="TCN",
             steps=[Step(cwd="TCN/copy_memory", argv=["copymem_test.py", "--epochs", "1", "--batch_size", "1000", "--levels", "2", "--nhid", "8", "--log-interval", "2"],
                         success=r"\| Epoch\s+1 \|", fix=("copymem_test.py", "model.py", "utils.py"))]),
        *[
            Case(name=f"PyTorch-GAN {n}", repo="PyTorch-GAN", prepare=mn,
                 steps=[Step(cwd=f"implementations/{n}", argv=[f"{s}.py", *gan], success=r"\[Epoch 0/1\] \[Batch 0/\d+\]", fix=(f"{s}.py",))])
            for n, s in (("gan", "gan"), ("cgan", "cgan"), ("wgan_gp", "wgan_gp"))
        ],
        # The generator+encoder Adam step (optimizer_GE.step()) updates the generator's weights in
        # place between the forward pass that built D_gen and d_loss.backward() through it;
        # torch >= 1.5 counts optimizer updates as in-place modifications and refuses. The
        # control shows the same error with no device and no anyware in the process.
        Case(name="PyTorch-GAN cluster_gan", repo="PyTorch-GAN", prepare=mn,
             steps=[Step(cwd="implementations/cluster_gan", argv=["clustergan.py", "-n", "1", "-b", "64"], success=r"\[Epoch 0/1\]", fix=("clustergan.py",))],
             control=Control(
                 signature=r"modified by an inplace operation: \[torch\.FloatTensor \[64, 1, 4, 4\]\] is at version 2; expected version 1",
                 evidence=r"Adam\.step\(\) at clustergan\.py:451 modified \d+ parameter\(s\) in place: .*\[64, 1, 4, 4\] v1→v2(.|\n)*anyware modules loaded: none",
                 verdict="fails identically without any device involved (upstream bug): d_loss.backward() (clustergan.py:474) "
                         "back-propagates through the generator graph built at line 425, whose last ConvTranspose2d(64, 1, 4) "
                         "weight [64, 1, 4, 4] optimizer_GE.step() (Adam, line 451) has meanwhile updated in place (version 1 → 2); "
                         "torch >= 1.5 refuses that on every device",
                 edits=(("clustergan.py", "    Tensor = torch.cuda.FloatTensor\n", "    Tensor = torch.FloatTensor\n"),
                        ("clustergan.py", "zc_idx = zc_idx.random_(n_c).cuda()", "zc_idx = zc_idx.random_(n_c)")),
                 # the usual GAN fix: the discriminator's fake loss on a detached generator output
                 upstream_fix=(("clustergan.py", "fake_loss = bce_loss(D_gen, fake)", "fake_loss = bce_loss(discriminator(gen_imgs.detach()), fake)"),))),
        Case(name="resnet_cifar10 trainer", repo="resnet_cifar10", prepare=lambda r: _data.cifar_stub(r / "_stub"), env={"_STUB": "1"},
             steps=[Step(cwd=".", argv=["trainer.py", "--arch", "resnet20", "--epochs", "1", "-b", "16", "-j", "0", "-p", "1", "--save-dir", "save"],
                         success=r"Epoch: \[0\]\[1/\d+\]", fix=("trainer.py", "resnet.py"))]),
        Case(name="resnet20 .th (cuda:0 storages)", repo="resnet_cifar10", prepare=lambda r: (r / "load_resnet20.py").write_text(_data.RESNET20_LOADER),
             steps=[Step(cwd=".", argv=["load_resnet20.py"], success=r"loaded \d+ tensors", fix=("load_resnet20.py",))]),
    ]  # fmt: skip


def setup(mirrors: Path) -> None:
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([PY, "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    subprocess.run([PY, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
    for name, (mirror, commit) in REPOS.items():
        dest = WORK / "src" / name
        shutil.rmtree(dest, ignore_errors=True)
        missing = extract(mirrors / mirror / "repo", commit, dest)
        print(
            f"{name} @ {commit}: extracted ({len(missing)} blob(s) absent from the mirror: {missing[:3]})"
        )


def _env(case: Case, root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANYWARE_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    env.update({k: v for k, v in case.env.items() if not k.startswith("_")})
    if case.env.get("_STUB"):
        env["PYTHONPATH"] = str(root / "_stub")
    return env


def _command(step: Step, mode: str) -> list[str]:
    argv = [a for a in step.argv if mode == "shim" or a not in step.user_choice]
    step = Step(cwd=step.cwd, argv=argv, success=step.success, nproc=step.nproc)
    if mode == "control":
        return [PY, str(Path(__file__).resolve().parent / "_control.py"), *step.argv]
    if mode in ("shim", "patched"):
        cmd = [PY, "-m", "anyware.cli.main", "run"]
        if step.nproc > 1:
            cmd += ["--nproc", str(step.nproc)]
        return [*cmd, *step.argv]
    if step.nproc > 1:
        return [
            PY,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={step.nproc}",
            *step.argv,
        ]
    return [PY, *step.argv]


def _apply_edits(
    cwd: Path,
    edits: tuple[tuple[str, str, str], ...],
    why: str = "the least the script needs to start without a GPU",
) -> str:
    """Apply a control's text edits; returns them as a diff for the log."""
    shown = []
    for name, old, new in edits:
        path = cwd / name
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"control edit does not match exactly once in {path}: {old!r}")
        path.write_text(text.replace(old, new))
        shown.append(f"--- {name}\n-{old.rstrip()}\n+{new.rstrip()}")
    return f"control edits ({why}):\n" + "\n".join(shown)


def run_case(case: Case, mode: str, timeout: int) -> dict[str, object]:
    root = WORK / "runs" / mode / re.sub(r"[^A-Za-z0-9]+", "_", case.name)
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(WORK / "src" / case.repo, root)
    case.prepare(root)
    env = _env(case, root)
    if mode == "control":
        env["CUDA_VISIBLE_DEVICES"] = ""  # no device, even on a GPU machine
    t0 = time.perf_counter()
    log: list[str] = []
    status = "pass"
    steps = case.steps[:1] if mode == "control" else case.steps
    for step in steps:
        cwd = root / step.cwd
        if mode == "fixed" and step.fix:
            fix = subprocess.run(
                [PY, "-m", "anyware.cli.main", "migrate", "fix", *step.fix],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
            )
            log.append(fix.stdout + fix.stderr)
        if mode == "control" and case.control is not None:
            log.append(_apply_edits(cwd, case.control.edits))
        if mode == "patched" and case.control is not None:
            log.append(_apply_edits(cwd, case.control.upstream_fix, "the script's own bug fixed"))
        try:
            proc = subprocess.run(
                _command(step, mode),
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            out, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            out, code = f"{e.stdout or ''}{e.stderr or ''}\nTIMEOUT after {timeout}s", -1
        log.append(out if isinstance(out, str) else out.decode(errors="replace"))
        status = _status(case, mode, code, log[-1], step.success)
        if status != "pass":
            break
    (root.parent / f"{root.name}.log").write_text("\n".join(log))
    return {
        "case": case.name,
        "mode": mode,
        "passed": status == "pass",
        "status": status,
        "seconds": round(time.perf_counter() - t0, 1),
        "log": str(root.parent / f"{root.name}.log"),
    }


def _status(case: Case, mode: str, code: int, out: str, success: str) -> str:
    """pass / fail, ``upstream`` for a failure with the control's signature, and for the
    control itself ``reproduced`` (same failure, evidence shown, no anyware) or not."""
    control = case.control
    if mode == "patched":
        return "pass" if code == 0 and re.search(success, out) else "fail"
    if mode == "control":
        assert control is not None
        same = code != 0 and re.search(control.signature, out) and re.search(control.evidence, out)
        return "reproduced" if same else "not reproduced"
    if code == 0 and re.search(success, out):
        return "pass"
    if control is not None and re.search(control.signature, out):
        return "upstream"
    return "fail"


def main() -> None:
    ap = argparse.ArgumentParser(description="anyware migration corpus harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    r = sub.add_parser("run")
    r.add_argument("--only", nargs="*", default=None, help="case names (substring match)")
    r.add_argument(
        "--mode",
        choices=["shim", "fixed", "control", "patched", "both", "all"],
        default="all",
        help="both = shim and fixed; all = both plus, for cases with a control, the control "
        "(plain cpu torch, no anyware) and patched (anyware run with the script's bug fixed)",
    )
    r.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    if args.cmd == "setup":
        setup(args.mirrors)
        return
    modes = {"both": ["shim", "fixed"], "all": ["shim", "fixed", "control", "patched"]}.get(
        args.mode, [args.mode]
    )
    cases = [c for c in _cases() if not args.only or any(o in c.name for o in args.only)]
    results_path = WORK / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    versions = subprocess.run(
        [PY, "-c", "import torch, torchvision; print(torch.__version__, torchvision.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    for case in cases:
        for mode in modes:
            if mode in ("control", "patched") and case.control is None:
                continue
            res = run_case(case, mode, args.timeout)
            res["versions"] = versions
            results[f"{case.name}|{mode}"] = res
            results_path.write_text(json.dumps(results, indent=2))
            print(
                f"{str(res['status']).upper():<14} {mode:<7} {case.name:<36} {res['seconds']:>7.1f}s  {res['log']}",
                flush=True,
            )
    print(f"\ntorch/torchvision in the corpus venv: {versions}")
    print("\n| case | anyware run | plain python after fix | control (cpu torch, no anyware) |")
    print("|---|---|---|---|")
    notes = []
    for case in _cases():
        cells = []
        for mode in ("shim", "fixed", "control"):
            r = results.get(f"{case.name}|{mode}")
            cells.append(
                "—"
                if r is None
                else f"{r.get('status', 'pass' if r['passed'] else 'fail')} ({r['seconds']}s)"
            )
        print(f"| {case.name} | {cells[0]} | {cells[1]} | {cells[2]} |")
        if case.control is not None:
            patched = results.get(f"{case.name}|patched")
            after = (
                ""
                if patched is None
                else f" With that bug fixed, `anyware run`: {patched['status']}."
            )
            notes.append(f"{case.name}: {case.control.verdict}.{after}")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
