"""MIG008: legacy ``torch.cuda.<X>Tensor`` constructors, ``.type(...)`` casts, annotations and
aliases are rewritten where the meaning is certain; the rest is reported, never guessed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from anyware.migrate.codemod import transform_source
from anyware.migrate.codemod.rules import Finding

ACC = '(torch.accelerator.current_accelerator(check_available=True) or torch.device("cpu"))'
CPU = 'torch.device("cpu")'


def fix(src: str) -> tuple[str, list[Finding]]:
    out, findings = transform_source(src.encode())
    text = out.decode()
    compile(text, "x.py", "exec")
    again, _ = transform_source(out)
    assert again == out, "a second fix changed the file"
    return text, [f for f in findings if f.code == "MIG008"]


def run(text: str) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(compile(text, "x.py", "exec"), scope)
    return scope


def test_constructors_with_sizes_and_data() -> None:
    text, found = fix(
        "import numpy as np\nimport torch\n"
        "a = torch.cuda.FloatTensor(2, 3).fill_(1.0)\n"
        "b = torch.cuda.LongTensor(np.random.randint(0, 10, (4,)))\n"
        "c = torch.cuda.FloatTensor(0.5 * np.ones((2, 2)))\n"
        "d = torch.cuda.DoubleTensor([1, 2, 3])\n"
        "e = torch.cuda.FloatTensor(a.size())\n"
        "f = torch.cuda.HalfTensor()\n"
    )
    assert f"torch.empty(2, 3, dtype=torch.float32, device={ACC}).fill_(1.0)" in text
    assert "torch.as_tensor(np.random.randint(0, 10, (4,)), dtype=torch.int64" in text
    assert "torch.as_tensor(0.5 * np.ones((2, 2)), dtype=torch.float32" in text
    assert "torch.as_tensor([1, 2, 3], dtype=torch.float64" in text
    assert "torch.empty(a.size(), dtype=torch.float32" in text
    assert f"torch.empty(0, dtype=torch.float16, device={ACC})" in text
    assert "torch.cuda" not in text
    assert len(found) == 6 and all(f.fixed for f in found)
    out = run(text)
    assert out["a"].shape == (2, 3) and out["a"].dtype == torch.float32 and out["a"].eq(1).all()
    assert out["b"].dtype == torch.int64 and out["b"].shape == (4,)
    assert out["c"].eq(0.5).all() and out["d"].tolist() == [1.0, 2.0, 3.0]
    assert out["e"].shape == (2, 3) and out["f"].shape == (0,)


SIZES = ["3", "2, 3", "x.size()", "x.size(0)", "x.shape[1]", "x.size()[1:]", "len(x) * 2"]
DATA = ["[[1, 2]]", "(2, 3)", "np.arange(3) * 2", "-0.5 * np.ones(2)", "x.numpy()"]


@pytest.mark.parametrize("args", SIZES + DATA)
def test_rewrite_means_what_the_legacy_constructor_meant(args: str) -> None:
    """On the cpu, torch.FloatTensor(args) is what torch.cuda.FloatTensor(args) does on a GPU:
    the rewrite must give the same shape, dtype and (for data) values."""
    text, found = fix(f"import numpy as np\nimport torch\ny = torch.cuda.FloatTensor({args})\n")
    assert found and all(f.fixed for f in found), found
    env = {"np": np, "x": torch.zeros(2, 3)}
    legacy = eval(f"torch.FloatTensor({args})", {"torch": torch, **env})
    scope: dict[str, Any] = dict(env)
    exec(compile(text, "x.py", "exec"), scope)
    new = scope["y"]
    assert new.shape == legacy.shape and new.dtype == legacy.dtype
    if args in DATA:  # sizes leave memory uninitialised: only shape and dtype are defined
        assert torch.equal(new, legacy)


def test_names_are_followed_to_their_value() -> None:
    text, found = fix(
        "import numpy as np\nimport torch\n"
        "n = len([1, 2])\narr = np.zeros((2, 2))\n"
        "a = torch.cuda.FloatTensor(n)\nb = torch.cuda.FloatTensor(arr)\n"
    )
    assert "torch.empty(n, dtype=torch.float32" in text
    assert "torch.as_tensor(arr, dtype=torch.float32" in text
    assert all(f.fixed for f in found)


def test_straight_line_code_sees_only_earlier_bindings() -> None:
    text, found = fix(
        "import numpy as np\nimport torch\n"
        "def sample(n):\n"
        "    labels = np.array([i % 10 for i in range(n)])\n"
        "    labels = torch.cuda.LongTensor(labels)\n"
        "    return labels\n"
        "def loop(batches):\n"
        "    x = np.zeros(2)\n"
        "    for b in batches:\n"
        "        y = torch.cuda.FloatTensor(x)\n"
        "        x = b\n"
    )
    assert "labels = torch.as_tensor(labels, dtype=torch.int64" in text
    # in a loop a later line may bind first (x = b from the previous turn): left alone
    assert "torch.cuda.FloatTensor(x)" in text
    assert sorted(f.fixed for f in found) == [False, True]
    assert run(text)["sample"](4).tolist() == [0, 1, 2, 3]


def test_alias_of_cuda_availability_becomes_the_accelerator() -> None:
    text, found = fix(
        "import numpy as np\nimport torch\n"
        "cuda = True if torch.cuda.is_available() else False\n"
        "\n"
        "Tensor = torch.cuda.FloatTensor if cuda else torch.FloatTensor\n"
        "\n"
        "# Configure data\n"
        "imgs = torch.rand(4, 1, 2, 2)\n"
        "real = imgs.type(Tensor)\n"
        "valid = Tensor(imgs.size(0), 1).fill_(1.0)\n"
        "z = Tensor(np.random.normal(0, 1, (imgs.shape[0], 8)))\n"
    )
    assert "Tensor =" not in text and "# Configure data\n" in text
    assert f"real = imgs.to(device={ACC}, dtype=torch.float32)" in text
    assert f"valid = torch.empty(imgs.size(0), 1, dtype=torch.float32, device={ACC})" in text
    assert "z = torch.as_tensor(np.random.normal(0, 1, (imgs.shape[0], 8)), dtype" in text
    assert [f.fixed for f in found] == [True] * 4
    out = run(text)
    assert out["valid"].shape == (4, 1) and out["z"].shape == (4, 8)
    assert out["real"].dtype == torch.float32


def test_alias_keeps_the_users_condition() -> None:
    text, _ = fix(
        "import torch\n"
        "def main(args):\n"
        "    LongTensor = torch.cuda.LongTensor if args.cuda else torch.LongTensor\n"
        "    return LongTensor(3).fill_(2).type(LongTensor)\n"
    )
    dev = f"({ACC} if args.cuda else {CPU})"
    assert f"torch.empty(3, dtype=torch.int64, device={dev}).fill_(2)" in text
    assert f".to(device={dev}, dtype=torch.int64)" in text
    assert "LongTensor =" not in text


def test_is_cuda_alias_follows_the_tensor() -> None:
    text, _ = fix(
        "import torch\n"
        "def reparam(mu):\n"
        "    Tensor = torch.cuda.FloatTensor if mu.is_cuda else torch.FloatTensor\n"
        "    return Tensor(mu.size(0), 2)\n"
    )
    assert "torch.empty(mu.size(0), 2, dtype=torch.float32, device=mu.device)" in text
    assert run(text)["reparam"](torch.zeros(3)).shape == (3, 2)


def test_type_casts_and_annotations() -> None:
    text, found = fix(
        "from typing import Optional\nimport torch\n"
        "def f(x: torch.cuda.FloatTensor) -> Optional[torch.cuda.LongTensor]:\n"
        "    return x.type(torch.cuda.LongTensor, True)\n"
        "y = torch.ones(2).type(torch.cuda.HalfTensor if torch.cuda.is_available() else torch.HalfTensor)\n"
    )
    assert "def f(x: torch.Tensor) -> Optional[torch.Tensor]:" in text
    assert f"x.to(device={ACC}, dtype=torch.int64, non_blocking=True)" in text
    assert f"y = torch.ones(2).to(device={ACC}, dtype=torch.float16)" in text
    assert "torch.cuda" not in text and all(f.fixed for f in found)
    assert run(text)["y"].dtype == torch.float16


@pytest.mark.parametrize(
    ("src", "reason"),
    [
        ("ok = isinstance(x, torch.cuda.FloatTensor)", "used as a value"),
        ("def g(labels):\n    return torch.cuda.LongTensor(labels)", "may be a size or data"),
        ("y = torch.cuda.FloatTensor(*shape)", "*args"),
        # a torch.Size (sizes) on a tensor, a tuple (data) on an ndarray
        ("y = torch.cuda.FloatTensor(a.shape)", "may be a size or data"),
        ("y = torch.cuda.FloatTensor(a.shape[1:])", "may be a size or data"),
        ("y = torch.cuda.FloatTensor(a.size() + (1,))", "may be a size or data"),
        ("T = torch.cuda.FloatTensor if c else torch.DoubleTensor\ny = T(2)", "differ in dtype"),
        ("T = torch.cuda.FloatTensor", "not used in this file"),
        ("T = torch.cuda.FloatTensor\nT = torch.cuda.LongTensor\ny = T(2)", "more than once"),
        ("T = torch.cuda.FloatTensor\ny = T(2)\nkinds = [T]", "used as a value"),
        ("T = torch.cuda.FloatTensor\nfor v in vals:\n    y = T(v)", "may be a size or data"),
    ],
)
def test_unsafe_uses_are_reported_not_rewritten(src: str, reason: str) -> None:
    text, found = fix(f"import torch\n{src}\n")
    assert found and not any(f.fixed for f in found), found
    assert any(reason in f.message for f in found), [f.message for f in found]
    assert text == f"import torch\n{src}\n"  # all or nothing: no use of a kept alias changes


def test_alias_with_a_comment_is_kept_but_its_uses_are_rewritten() -> None:
    text, found = fix("import torch\nT = torch.cuda.FloatTensor  # GPU type\ny = T(2, 2)\n")
    assert "T = torch.cuda.FloatTensor  # GPU type" in text
    assert "y = torch.empty(2, 2, dtype=torch.float32" in text
    assert sorted(f.fixed for f in found) == [False, True]


def test_alias_alone_in_a_block_leaves_a_valid_block() -> None:
    text, _ = fix("import torch\nif True:\n    T = torch.cuda.FloatTensor\nprint(T(1, 2).shape)\n")
    assert "T =" not in text
    run(text)
