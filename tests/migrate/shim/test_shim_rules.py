"""One test per entry of the shim's rule table (``anyware.migrate.shim.rules.all_rules``).

``TESTS`` maps each rule's ``api`` to its test; ``test_every_rule_has_a_test`` fails when a rule
is added without one.
"""

from __future__ import annotations

import io
import socket
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from tests.migrate.conftest import redirects, unsupported_apis

TESTS: dict[str, Callable[..., None]] = {}


def covers(*apis: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        for api in apis:
            TESTS[api] = fn
        return fn

    return deco


def test_every_rule_has_a_test() -> None:
    from anyware.migrate.shim.rules import all_rules

    missing = sorted({r.api for r in all_rules()} - set(TESTS))
    assert not missing, f"shim rules without a test: {missing}"


CPU = torch.device("cpu")

# --- device arguments ---------------------------------------------------------------------


@covers("torch.device")
def test_torch_device(cpu_shim: Any) -> None:
    assert torch.device("cuda") == CPU
    assert torch.device("cuda", 1) == CPU
    assert torch.device("cuda:3") == CPU
    assert torch.device(0) == CPU
    assert torch.device("cpu") == CPU
    d = torch.device("cuda")
    assert isinstance(d, torch.device) and isinstance(CPU, torch.device)
    assert redirects()["torch.device"] == 5
    # torch.device.__reduce__ looks the public name up: spawn children must still unpickle it
    import pickle

    assert pickle.loads(pickle.dumps(torch.device("cuda:1"))) == CPU
    assert pickle.loads(pickle.dumps(torch.ones(1, device="cuda"))).device == CPU
    assert pickle.loads(pickle.dumps(torch.cuda.FloatTensor)) is torch.cuda.FloatTensor


@covers("torch.* factories (device=...)")
@pytest.mark.parametrize(
    "make",
    [
        lambda d: torch.zeros(2, device=d),
        lambda d: torch.randn(2, 2, device=d),
        lambda d: torch.arange(3, device=d),
        lambda d: torch.tensor([1.0], device=d),
        lambda d: torch.full((2,), 1.0, device=d),
        lambda d: torch.ones(1).new_zeros(2, device=d),
    ],
)
@pytest.mark.parametrize("spelling", ["cuda", "cuda:1", 0, "cuda:{i}"])
def test_factories(cpu_shim: Any, make: Callable[[Any], torch.Tensor], spelling: Any) -> None:
    if spelling == "cuda:{i}":
        i = 0
        spelling = f"cuda:{i}"
    assert make(spelling).device == CPU
    assert sum(n for api, n in redirects().items() if "(device=...)" in api) == 1


def test_set_default_device(cpu_shim: Any) -> None:
    torch.set_default_device("cuda")
    try:
        assert torch.empty(1).device == CPU
    finally:
        torch.set_default_device(None)
    assert redirects()["torch.set_default_device(device=...)"] == 1


@covers("Tensor.to")
def test_tensor_to(cpu_shim: Any) -> None:
    x = torch.ones(2)
    for spelling in ("cuda", "cuda:0", 0, torch.device("cuda", 0)):
        assert x.to(spelling).device == CPU
    assert x.to(device="cuda:1", dtype=torch.float16).dtype == torch.float16
    assert x.to(torch.float16).dtype == torch.float16  # a dtype is not a device
    # torch.device("cuda", 0) was already the target when built: not a Tensor.to redirect
    assert redirects()["Tensor.to('cuda')"] == 4


@covers("Tensor.cuda")
def test_tensor_cuda(cpu_shim: Any) -> None:
    x = torch.ones(2)
    assert x.cuda().device == CPU
    assert x.cuda(1, non_blocking=True).device == CPU
    assert redirects()["Tensor.cuda"] == 2


@covers("Tensor.is_cuda")
def test_is_cuda(cpu_shim: Any) -> None:
    assert torch.ones(1).is_cuda is True  # on the target, as the script expects
    # torch's own code (and TRUTH_PACKAGES) sees the real answer
    ns: dict[str, Any] = {"__name__": "torch.optim.fake", "x": torch.ones(1)}
    exec("answer = x.is_cuda", ns)
    assert ns["answer"] is False


@covers("Module.cuda")
def test_module_cuda(cpu_shim: Any) -> None:
    m = torch.nn.Linear(2, 2).cuda()
    assert next(m.parameters()).device == CPU
    torch.nn.Linear(2, 2).cuda(0)
    assert redirects()["Module.cuda"] == 2


@covers("Module.to")
def test_module_to(cpu_shim: Any) -> None:
    m = torch.nn.Linear(2, 2).to("cuda:0")
    m.to(torch.device("cuda"))
    m.to(device=0)
    assert redirects()["Module.to('cuda')"] == 2
    assert next(m.parameters()).device == CPU


@covers("torch.Generator")
def test_generator(cpu_shim: Any) -> None:
    g = torch.Generator("cuda")
    g.manual_seed(1)
    assert isinstance(g, torch.Generator)
    assert torch.randn(2, generator=g).shape == (2,)
    assert redirects()["torch.Generator('cuda')"] == 1


@covers("Tensor.pin_memory")
def test_pin_memory(cpu_shim: Any) -> None:
    x = torch.ones(2)
    assert x.pin_memory() is x
    dl = torch.utils.data.DataLoader(list(range(4)), batch_size=2, pin_memory=True)
    assert dl.pin_memory is False
    assert [b.tolist() for b in dl] == [[0, 1], [2, 3]]
    assert redirects()["DataLoader(pin_memory=True)"] == 1


@covers("torch.cuda.FloatTensor")
def test_legacy_types(cpu_shim: Any) -> None:
    Tensor = torch.cuda.FloatTensor
    t = Tensor(3, 1).fill_(1.0)
    assert t.dtype == torch.float32 and t.device == CPU
    assert torch.ones(2, dtype=torch.int64).type(Tensor).dtype == torch.float32
    assert torch.ones(2).type(torch.cuda.LongTensor).dtype == torch.int64
    assert torch.ones(2).type("torch.cuda.HalfTensor").dtype == torch.float16
    assert isinstance(t, torch.cuda.FloatTensor)
    assert redirects()["Tensor.type(torch.cuda.*Tensor)"] == 3


def test_float64_on_a_device_without_it(fake_shim: Any) -> None:
    x = torch.zeros(2, dtype=torch.float64, device="cuda")
    assert x.dtype == torch.float32
    assert torch.ones(2, dtype=torch.float64).cuda().dtype == torch.float32
    m = torch.nn.Linear(2, 2).double().cuda()
    assert next(m.parameters()).dtype == torch.float32
    assert {
        "torch.zeros(device=...) (float64)",
        "Tensor.cuda (float64)",
        "Module.cuda (float64)",
    } <= unsupported_apis()


def test_float64_strict_is_an_error(fake_shim: Any) -> None:
    from anyware.migrate import MigrationError
    from anyware.migrate.shim import STATE

    STATE.strict = True
    try:
        with pytest.raises(MigrationError, match="float64"):
            torch.ones(2, dtype=torch.float64, device="cuda")
    finally:
        STATE.strict = False


# --- torch.cuda.* -------------------------------------------------------------------------


@covers("torch.cuda.is_available", "torch.cuda.device_count", "torch.cuda.current_device")
def test_device_queries(fake_shim: Any) -> None:
    assert torch.cuda.is_available() is True
    assert torch.cuda.device_count() == 2  # the fake table's count
    assert torch.cuda.current_device() == 0
    r = redirects()
    assert r["torch.cuda.is_available"] == r["torch.cuda.device_count"] == 1


def test_libraries_see_the_truth(cpu_shim: Any) -> None:
    # torch's own modules get the real answer: no CUDA in this cpu build.
    assert torch.utils.data.dataloader.torch.cuda.is_available() is True  # user frame
    ns: dict[str, Any] = {"__name__": "accelerate.utils", "torch": torch}
    exec("answer = torch.cuda.is_available()", ns)
    assert ns["answer"] is False


@covers("torch.cuda.set_device", "torch.cuda.device")
def test_set_device_and_context(cpu_shim: Any) -> None:
    torch.cuda.set_device(1)
    assert torch.cuda.current_device() == 1
    with torch.cuda.device(0):
        assert torch.cuda.current_device() == 0
    assert torch.cuda.current_device() == 1
    torch.cuda.set_device("cuda:0")
    assert torch.cuda.current_device() == 0


@covers(
    "torch.cuda.synchronize",
    "torch.cuda.Event",
    "torch.cuda.Stream",
    "torch.cuda.current_stream",
    "torch.cuda.stream",
)
def test_streams_and_events(cpu_shim: Any) -> None:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.ones(64, 64) @ torch.ones(64, 64)
    end.record()
    torch.cuda.synchronize()
    assert end.elapsed_time(start) <= 0 <= start.elapsed_time(end)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        torch.cuda.current_stream().synchronize()
    assert redirects()["torch.cuda.Event"] == 2


@covers(
    "torch.cuda.manual_seed",
    "torch.cuda.manual_seed_all",
    "torch.cuda.get_rng_state",
    "torch.cuda.set_rng_state",
)
def test_random(cpu_shim: Any) -> None:
    torch.cuda.manual_seed(3)
    a = torch.randn(3, device="cuda")
    torch.cuda.manual_seed_all(3)
    b = torch.randn(3, device="cuda")
    assert torch.equal(a, b)
    state = torch.cuda.get_rng_state()
    c = torch.randn(3)
    torch.cuda.set_rng_state(state)
    assert torch.equal(c, torch.randn(3))


@covers(
    "torch.cuda.get_device_name",
    "torch.cuda.get_device_properties",
    "torch.cuda.get_device_capability",
    "torch.cuda.is_bf16_supported",
)
def test_device_facts(fake_shim: Any) -> None:
    assert torch.cuda.get_device_name(0) == "anyware fake accelerator"
    props = torch.cuda.get_device_properties(0)
    assert props.total_memory == 16 * 2**30 and props.name == "anyware fake accelerator"
    assert torch.cuda.get_device_capability() == (0, 0)
    assert torch.cuda.is_bf16_supported() is True


@covers(
    "torch.cuda.memory_allocated",
    "torch.cuda.max_memory_allocated",
    "torch.cuda.memory_reserved",
    "torch.cuda.max_memory_reserved",
    "torch.cuda.reset_peak_memory_stats",
    "torch.cuda.empty_cache",
    "torch.cuda.mem_get_info",
)
def test_memory(cpu_shim: Any) -> None:
    assert torch.cuda.memory_allocated() > 0
    assert torch.cuda.max_memory_allocated() >= torch.cuda.memory_allocated() // 2
    assert torch.cuda.memory_reserved() > 0 and torch.cuda.max_memory_reserved() > 0
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    assert 0 <= free <= total and total > 0


# --- amp ----------------------------------------------------------------------------------


@covers("torch.autocast")
def test_autocast_policy(cpu_shim: Any) -> None:
    a = torch.ones(4, 4)
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        assert (a @ a).dtype == torch.bfloat16  # fp16 autocast on cpu → bf16, reported
    with torch.cuda.amp.autocast():
        assert (a @ a).dtype == torch.bfloat16
    with torch.amp.autocast("cuda", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    r = redirects()
    assert r["torch.autocast(device_type='cuda')"] == 3
    assert r["torch.autocast dtype float16 → bfloat16 on cpu"] == 2
    assert isinstance(torch.autocast("cpu"), torch.amp.autocast_mode.autocast)


@covers("torch.amp.GradScaler")
def test_grad_scaler(cpu_shim: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = torch.cuda.amp.GradScaler()
        scaler2 = torch.amp.GradScaler("cuda")
    m = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss = m(torch.ones(1, 2)).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler2.get_scale() > 0
    assert redirects()["torch.amp.GradScaler('cuda')"] == 2


# --- distributed --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@covers(
    "torch.distributed.init_process_group",
    "torch.distributed.new_group",
    "torch.nn.parallel.DistributedDataParallel",
)
def test_nccl_and_ddp(cpu_shim: Any) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        assert dist.get_backend() == "gloo"
        g = dist.new_group([0], backend="nccl")
        assert dist.get_backend(g) == "gloo"
        ddp = torch.nn.parallel.DistributedDataParallel(
            torch.nn.Linear(2, 2).cuda(), device_ids=[0], output_device=0
        )
        ddp(torch.ones(1, 2, device="cuda")).sum().backward()
        r = redirects()
        assert r["torch.distributed.init_process_group('nccl')"] == 1
        assert r["torch.distributed.new_group('nccl')"] == 1
        assert r["DistributedDataParallel(device_ids=...)"] == 1
    finally:
        dist.destroy_process_group()


@covers("torch.distributed.fsdp.FullyShardedDataParallel")
def test_fsdp_device_id(cpu_shim: Any) -> None:
    import types

    from anyware.migrate import _hooks
    from anyware.migrate.shim import distributed
    from anyware.migrate.shim._patch import Patcher

    # FSDP needs a real process group to build; the rule's job is only to translate
    # device_id before FSDP's own __init__ runs, so give it a stand-in class to patch.
    seen: dict[str, Any] = {}

    class Fsdp:
        def __init__(self, module: Any, **kwargs: Any) -> None:
            seen.update(kwargs)

    hooks: list[Any] = []
    p = Patcher()
    real_when = _hooks.when_imported
    _hooks.when_imported = lambda name, cb: hooks.append((name, cb))  # type: ignore[assignment]
    try:
        distributed._install_fsdp(p, cpu_shim)
    finally:
        _hooks.when_imported = real_when  # type: ignore[assignment]
    assert hooks[0][0] == "torch.distributed.fsdp"
    hooks[0][1](types.SimpleNamespace(FullyShardedDataParallel=Fsdp))
    try:
        Fsdp(torch.nn.Linear(2, 2), device_id="cuda:0")
    finally:
        p.undo()
    assert seen["device_id"] == CPU
    assert redirects()["FullyShardedDataParallel(device_id=...)"] == 1


# --- serialization ------------------------------------------------------------------------


def _cuda_tagged_checkpoint(obj: Any) -> bytes:
    """Bytes of ``torch.save(obj)`` whose storages are tagged ``cuda:0``, as if saved on a GPU."""
    import torch.serialization as ser

    buf = io.BytesIO()
    orig = ser.location_tag
    ser.location_tag = lambda storage: "cuda:0"  # type: ignore[assignment]
    try:
        torch.save(obj, buf)
    finally:
        ser.location_tag = orig
    return buf.getvalue()


@covers("torch.load")
@pytest.mark.parametrize(
    "map_location",
    [None, "cuda", "cuda:0", torch.device("cuda", 0), {"cuda:0": "cuda:1"}, lambda s, loc: None],
    ids=["none", "str", "str-index", "device", "dict", "callable"],
)
def test_load_cuda_checkpoint(cpu_shim: Any, map_location: Any) -> None:
    data = _cuda_tagged_checkpoint({"w": torch.arange(4.0)})
    kwargs = {} if map_location is None else {"map_location": map_location}
    out = torch.load(io.BytesIO(data), **kwargs)
    assert out["w"].device == CPU and out["w"].tolist() == [0, 1, 2, 3]
    assert any(api.startswith("torch.load") for api in redirects())


def test_cuda_checkpoint_fails_without_the_shim() -> None:
    data = _cuda_tagged_checkpoint({"w": torch.arange(4.0)})
    with pytest.raises(RuntimeError):
        torch.load(io.BytesIO(data))


@covers("torch.UntypedStorage.cuda")
def test_storage_cuda_in_map_location(cpu_shim: Any) -> None:
    data = _cuda_tagged_checkpoint({"w": torch.ones(2)})
    out = torch.load(io.BytesIO(data), map_location=lambda storage, loc: storage.cuda(0))
    assert out["w"].device == CPU
    assert redirects()["UntypedStorage.cuda"] == 1


# --- flags, profiling, graphs, extensions --------------------------------------------------


@covers("torch.backends.cudnn")
def test_cudnn_flags(cpu_shim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False  # False asks for nothing: not reported
    assert torch.backends.cudnn.benchmark is True
    assert unsupported_apis() == {"torch.backends.cudnn.benchmark"}
    assert "cuDNN-only" in capsys.readouterr().err
    torch.backends.cudnn.benchmark = False


@covers("torch.backends.cuda.matmul.allow_tf32")
def test_matmul_tf32(cpu_shim: Any) -> None:
    before = torch.get_float32_matmul_precision()
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
    assert redirects()["torch.backends.cuda.matmul.allow_tf32"] == 1


@covers("torch.profiler.ProfilerActivity.CUDA")
def test_profiler_activity(cpu_shim: Any) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        torch.ones(8) + 1
    assert prof.key_averages() is not None
    assert redirects()["torch.profiler.ProfilerActivity.CUDA"] == 1


@covers("torch.cuda.CUDAGraph")
def test_cuda_graphs(cpu_shim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    g = torch.cuda.CUDAGraph()
    x = torch.ones(2)
    with torch.cuda.graph(g):
        y = x * 2
    g.replay()
    assert y.tolist() == [2.0, 2.0]
    f = torch.nn.Linear(2, 2)
    assert torch.cuda.make_graphed_callables(f, (torch.ones(1, 2),)) is f
    assert {"torch.cuda.graph", "torch.cuda.CUDAGraph.replay"} <= unsupported_apis()
    assert capsys.readouterr().err.count("torch.cuda.graph at") == 1  # one warning


@covers("torch.cuda.nvtx")
def test_nvtx(cpu_shim: Any) -> None:
    torch.cuda.nvtx.range_push("step")
    torch.cuda.nvtx.mark("x")
    torch.cuda.nvtx.range_pop()
    with torch.cuda.nvtx.range("block"):
        pass
    assert redirects()["torch.cuda.nvtx"] == 3


@covers("torch.utils.cpp_extension.load")
def test_cuda_extension_reported(cpu_shim: Any) -> None:
    import torch.utils.cpp_extension as ext

    from anyware.migrate import MigrationError
    from anyware.migrate.shim import STATE

    STATE.strict = True
    try:
        with pytest.raises(MigrationError, match="binary CUDA kernels"):
            ext.load(name="k", sources=["kernel.cu"])
    finally:
        STATE.strict = False


# --- reversibility ------------------------------------------------------------------------


def test_redirect_is_reversible() -> None:
    import anyware.migrate as migrate

    watched = [
        (torch, "device"), (torch, "zeros"), (torch, "load"), (torch, "autocast"),
        (torch, "Generator"), (torch.Tensor, "to"), (torch.Tensor, "cuda"),
        (torch.nn.Module, "cuda"), (torch.cuda, "is_available"), (torch.cuda, "FloatTensor"),
        (torch.amp, "GradScaler"), (torch.distributed, "init_process_group"),
    ]  # fmt: skip
    before = [getattr(o, n) for o, n in watched]
    own_is_cuda = "is_cuda" in torch.Tensor.__dict__
    with migrate.redirect("cpu"):
        assert torch.cuda.is_available() is True
        assert any(getattr(o, n) is not b for (o, n), b in zip(watched, before, strict=True))
    assert [getattr(o, n) for o, n in watched] == before
    assert ("is_cuda" in torch.Tensor.__dict__) == own_is_cuda
    assert torch.cuda.is_available() is False
    with pytest.raises((RuntimeError, AssertionError)):
        torch.ones(1).cuda()
