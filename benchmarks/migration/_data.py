"""Tiny data the corpus scripts expect, fabricated so nothing is downloaded."""

from __future__ import annotations

import pickle
import random
import struct
import subprocess
from pathlib import Path

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
]


def mnist(root: Path, n_train: int = 128, n_test: int = 32) -> None:
    """``root/MNIST/raw/*-ubyte`` in the IDX format torchvision reads (no download)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = bytes(rng.randrange(256) for _ in range(n * 28 * 28))
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, n, 28, 28) + images
        )
        labels = bytes(rng.randrange(10) for _ in range(n))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels)


def text_corpus(directory: Path, lines: int = 200) -> None:
    """train/valid/test.txt for word_language_model."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for name, n in (("train.txt", lines), ("valid.txt", lines // 4), ("test.txt", lines // 4)):
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(n))
        (directory / name).write_text(body + "\n")


def image_folder(root: Path, python: str, classes: int = 2, per_class: int = 4) -> None:
    """``root/{train,val}/<class>/<i>.JPEG`` (written by the corpus venv, which has Pillow)."""
    code = (
        "import sys, random\nfrom pathlib import Path\nfrom PIL import Image\n"
        "root = Path(sys.argv[1]); rng = random.Random(0)\n"
        f"for split in ('train', 'val'):\n  for c in range({classes}):\n"
        f"    d = root / split / f'n{{c:08d}}'; d.mkdir(parents=True, exist_ok=True)\n"
        f"    for i in range({per_class}):\n"
        "      Image.new('RGB', (64, 64), tuple(rng.randrange(256) for _ in range(3))).save(d / f'{i}.JPEG')\n"
    )
    subprocess.run([python, "-c", code, str(root)], check=True)


def shakespeare_char(directory: Path, python: str, n_train: int = 20000, n_val: int = 4000) -> None:
    """nanoGPT's ``train.bin``/``val.bin`` (uint16 tokens) and ``meta.pkl``."""
    directory.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?\n'-&$3"))
    meta = {
        "vocab_size": len(chars),
        "itos": dict(enumerate(chars)),
        "stoi": {c: i for i, c in enumerate(chars)},
    }
    (directory / "meta.pkl").write_bytes(pickle.dumps(meta))
    code = (
        "import sys, numpy as np\nrng = np.random.default_rng(0)\n"
        "for name, n in (('train.bin', int(sys.argv[2])), ('val.bin', int(sys.argv[3]))):\n"
        f"    rng.integers(0, {len(chars)}, n).astype(np.uint16).tofile(sys.argv[1] + '/' + name)\n"
    )
    subprocess.run([python, "-c", code, str(directory), str(n_train), str(n_val)], check=True)


#: For akamaster's trainer.py: torchvision's CIFAR10 downloads and md5-checks its files, so the
#: harness puts this ``sitecustomize`` on PYTHONPATH; it swaps CIFAR10 for a small FakeData
#: with the same constructor when torchvision's cifar module is imported.
CIFAR_STUB = '''\
"""Corpus harness stub: torchvision.datasets.CIFAR10 → a 64-image FakeData (no download)."""
from anyware.migrate import _hooks


def _patch(mod):
    from torchvision.datasets import FakeData

    class CIFAR10(FakeData):
        def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
            super().__init__(size=64 if train else 32, image_size=(3, 32, 32), num_classes=10,
                             transform=transform, target_transform=target_transform)

    mod.CIFAR10 = CIFAR10
    import torchvision.datasets as ds
    ds.CIFAR10 = CIFAR10


_hooks.when_imported("torchvision.datasets", _patch)
'''


def cifar_stub(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(CIFAR_STUB)


#: Loads akamaster's shipped resnet20 weights (storages tagged cuda:0) with a plain torch.load.
RESNET20_LOADER = """\
import glob
import torch
import resnet

path = glob.glob("pretrained_models/resnet20-*.th")[0]
checkpoint = torch.load(path)
state = {k.replace("module.", "", 1): v for k, v in checkpoint["state_dict"].items()}
model = resnet.resnet20()
model.load_state_dict(state)
model.eval()
with torch.no_grad():
    out = model(torch.randn(2, 3, 32, 32))
print(f"loaded {len(state)} tensors from {path}; logits {tuple(out.shape)}; best_prec1 {checkpoint.get('best_prec1')}")
"""


def char_text(path: Path, chars: int = 6000) -> None:
    """A small character-level corpus (minGPT-ddp's CharDataset reads any text file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 12))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    path.write_text("\n".join(lines)[:chars])
