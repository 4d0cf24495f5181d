"""One case per codemod rule: what it converts (or flags), and that the result is stable."""

from __future__ import annotations

import pytest

from anyware.migrate.codemod import transform_source
from anyware.migrate.codemod.rules import RULES, get_rule

ACC = 'torch.accelerator.current_accelerator(check_available=True) or torch.device("cpu")'


def idx(i: str) -> str:
    return (
        f"(torch.device(torch.accelerator.current_accelerator().type, {i}) "
        'if torch.accelerator.is_available() else torch.device("cpu"))'
    )


#: code → (source line, text expected in the rewrite or None when only flagged)
CASES: dict[str, tuple[str, str | None]] = {
    "MIG001": (
        "y = x.cuda(rank, non_blocking=True)",
        f"y = x.to({idx('rank')}, non_blocking=True)",
    ),
    "MIG002": ('t = torch.zeros(3, device=f"cuda:{i}")', f"device={idx('i')}"),
    "MIG003": (
        'd = torch.device("cuda:0" if use else "cpu")',
        f'torch.device({idx("0")} if use else "cpu")',
    ),
    "MIG004": (
        "torch.cuda.set_device(g)",
        "(torch.accelerator.set_device_index(g) if torch.accelerator.is_available() else None)",
    ),
    "MIG005": (
        "c = torch.cuda.amp.autocast(dtype=torch.float16)",
        f"torch.autocast(({ACC}).type, dtype=torch.float16)",
    ),
    "MIG006": (
        "s = torch.cuda.amp.GradScaler(enabled=True)",
        f"torch.amp.GradScaler(({ACC}).type, enabled=True)",
    ),
    "MIG007": (
        'dist.init_process_group(backend="nccl")',
        f"backend=torch.distributed.get_default_backend_for_device(({ACC}))",
    ),
    "MIG008": (
        "y = torch.cuda.FloatTensor(2, 3)",
        f"torch.empty(2, 3, dtype=torch.float32, device=({ACC}))",
    ),
    "MIG009": ("ck = torch.load(path)", f"torch.load(path, map_location=({ACC}))"),
    "MIG010": (
        "m = DDP(m, device_ids=[g])",
        "device_ids=[g] if torch.accelerator.is_available() else None",
    ),
    "MIG011": ("torch.backends.cudnn.benchmark = True", None),
    "MIG020": ("fused = 'cuda' in device_type", None),
    "MIG021": ("g = rank % torch.cuda.device_count()", None),
    "MIG022": ('assert dev in ("cuda", "cpu")', None),
    "MIG023": (
        "from torch.utils.cpp_extension import CUDAExtension\next = CUDAExtension('k', ['k.cu'])",
        None,
    ),
}


def test_every_rule_has_a_case_and_a_docstring() -> None:
    assert {r.code for r in RULES} == set(CASES)
    for r in RULES:
        doc = type(r).__doc__ or __import__(type(r).__module__, fromlist=["x"]).__doc__
        assert doc and r.code in doc, f"{r.code} lacks its docstring"


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule(code: str) -> None:
    line, expected = CASES[code]
    src = f"import torch\n{line}\n".encode()
    out, findings = transform_source(src)
    mine = [f for f in findings if f.code == code]
    assert mine, f"{code} found nothing in {line!r}: {findings}"
    if expected is None:
        assert not any(f.fixed for f in mine)
    else:
        assert all(f.fixed for f in mine)
        assert expected in out.decode(), out.decode()
    again, _ = transform_source(out)
    assert again == out  # a second pass changes nothing


def test_device_string_assignment_stays_a_string() -> None:
    out, findings = transform_source(
        b"device = 'cuda'  # default\nlocal = f'cuda:{rank}'\nname = 'cuda'\n"
    )
    text = out.decode()
    assert f"device = str(({ACC}))  # default" in text
    assert "name = 'cuda'" in text  # a bare 'cuda' only for variables named like a device
    assert f"local = str({idx('rank')})" in text
    assert [f.code for f in findings] == ["MIG002", "MIG002"]


def test_index_variables_and_backend_assignments() -> None:
    src = b"backend = 'nccl'  # or gloo\nm = model.to(gpu_id)\nx = x.to(self.local_rank)\ny = y.to(dev)\n"
    text = transform_source(src)[0].decode()
    assert f"backend = torch.distributed.get_default_backend_for_device(({ACC}))  # or gloo" in text
    assert f"model.to({idx('gpu_id')})" in text
    assert f"x.to({idx('self.local_rank')})" in text
    assert "y = y.to(dev)" in text  # an arbitrary name may hold a device: left alone
    loc = transform_source(b'loc = f"cuda:{self.gpu_id}"\nkind = "cuda"\n')[0].decode()
    assert f"loc = str({idx('self.gpu_id')})" in loc and 'kind = "cuda"' in loc


def test_unknown_rule_code_suggests() -> None:
    with pytest.raises(KeyError, match="did you mean MIG0"):
        get_rule("MIG01")


def test_import_torch_added_when_missing() -> None:
    out, _ = transform_source(b"from torch import nn\nm = nn.Linear(2, 2).cuda()\n")
    text = out.decode()
    assert text.startswith("import torch\n") or "\nimport torch\n" in text
    compile(text, "x.py", "exec")


def test_comments_and_formatting_survive() -> None:
    src = b"import torch\n\n# keep this comment\nx  =  torch.ones(2).cuda()   # and this one\n\n\ny = 1\n"
    out, _ = transform_source(src)
    text = out.decode()
    assert (
        "# keep this comment\n" in text
        and "   # and this one\n" in text
        and "\n\n\ny = 1\n" in text
    )
