"""Device arguments: ``torch.device``, factory ``device=``, ``.to``/``.cuda``, ``is_cuda``,
generators, pinned memory, legacy ``torch.cuda.FloatTensor`` types.

``torch.device`` is replaced by a stand-in class whose metaclass translates CUDA spellings when
called and forwards ``isinstance``/``issubclass`` to the real type, so type checks keep working.
Float64 requested on a target without fp64 is demoted to float32 and reported (``--strict``:
an error) instead of silently computing in a dtype the device does not have.
"""

from __future__ import annotations

import functools
from typing import Any

from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import STATE, Target, caller_sees_truth, record, unsupported
from anyware.migrate.shim._translate import real_device_type, translate
from anyware.migrate.shim.rules import Rule, RuleKind

#: torch functions taking ``device=`` (the ones real scripts pass it to).
FACTORIES: tuple[str, ...] = (
    "tensor", "as_tensor", "asarray", "zeros", "ones", "empty", "full", "rand", "randn",
    "randint", "randperm", "arange", "range", "linspace", "logspace", "eye", "zeros_like",
    "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
    "empty_strided", "tril_indices", "triu_indices", "sparse_coo_tensor", "scalar_tensor",
    "normal", "hann_window", "hamming_window", "bartlett_window", "blackman_window",
    "kaiser_window", "empty_permuted", "set_default_device",
)  # fmt: skip
TENSOR_NEW: tuple[str, ...] = ("new_tensor", "new_zeros", "new_ones", "new_empty", "new_full")
LEGACY_TYPES: tuple[str, ...] = (
    "FloatTensor", "DoubleTensor", "HalfTensor", "BFloat16Tensor", "ByteTensor",
    "CharTensor", "ShortTensor", "IntTensor", "LongTensor", "BoolTensor",
)  # fmt: skip


def demote_fp64(t: Any, api: str) -> Any:
    """Float64 on a target without fp64 → float32, reported."""
    import torch

    target = STATE.target
    if target is None or "fp64" in target.dtypes or not isinstance(t, torch.Tensor):
        return t
    if t.dtype is not torch.float64:
        return t
    unsupported(
        f"{api} (float64)",
        f"device {target.name!r} has no float64; the tensor is float32 there",
    )
    return t.float()


class _ProxyMeta(type):
    """Metaclass of a stand-in for a C type: calls are translated, type checks forwarded."""

    _real: Any
    _make: Any

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._make(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._real)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return issubclass(sub, cls._real)


def proxy_class(name: str, real: Any, make: Any, module: str = "torch") -> Any:
    """A stand-in named ``module.name``, the public name it replaces: pickle stores classes
    by that name (``torch.device.__reduce__`` even looks ``torch.device`` up at run time), so
    objects still pickle, and unpickle in processes with or without the shim."""
    return _ProxyMeta(
        name,
        (),
        {
            "_real": real,
            "_make": staticmethod(make),
            "__doc__": real.__doc__,
            "__module__": module,
            "__qualname__": name,
        },
    )


def _device_ctor(*args: Any, **kwargs: Any) -> Any:
    real = real_device_type()
    if args:
        spec = args[0]
        if isinstance(spec, str) and len(args) == 2 and spec == "cuda":
            new, _ = translate(f"cuda:{int(args[1])}")
            record("torch.device")
            return new
        if isinstance(spec, str | int) and not isinstance(spec, bool) and len(args) == 1:
            new, changed = translate(spec)
            if changed:
                record("torch.device")
                return new
    elif kwargs.get("type") == "cuda":
        new, _ = translate(f"cuda:{kwargs['index']}" if kwargs.get("index") is not None else "cuda")
        record("torch.device")
        return new
    return real(*args, **kwargs)


def _install_device(p: Patcher, t: Target) -> None:
    import torch

    real = real_device_type()
    p.set(torch, "device", proxy_class("device", real, _device_ctor))


#: Functions whose device is their first positional argument.
POSITIONAL_DEVICE = frozenset({"set_default_device"})


def _wrap_factory(api: str, fn: Any) -> Any:
    positional = api.split("(")[0].rsplit(".", 1)[-1] in POSITIONAL_DEVICE

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if positional and args and "device" not in kwargs:
            kwargs["device"], args = args[0], args[1:]
        dev = kwargs.get("device")
        if dev is None:
            return fn(*args, **kwargs)
        new, changed = translate(dev)
        if not changed:
            return fn(*args, **kwargs)
        kwargs["device"] = new
        record(api)
        return demote_fp64(fn(*args, **kwargs), api)

    return wrapper


def _install_factories(p: Patcher, t: Target) -> None:
    import torch

    for name in FACTORIES:
        p.wrap(torch, name, functools.partial(_wrap_factory, f"torch.{name}(device=...)"))
    for name in TENSOR_NEW:
        p.wrap(torch.Tensor, name, functools.partial(_wrap_factory, f"Tensor.{name}(device=...)"))


def _translate_to_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, bool]:
    import torch

    if "device" in kwargs:
        new, changed = translate(kwargs["device"])
        if changed:
            kwargs = {**kwargs, "device": new}
        return args, kwargs, changed
    if args and not isinstance(args[0], torch.dtype | torch.Tensor):
        new, changed = translate(args[0])
        if changed:
            args = (new, *args[1:])
        return args, kwargs, changed
    return args, kwargs, False


def _install_tensor_to(p: Patcher, t: Target) -> None:
    import torch

    def make(orig: Any) -> Any:
        @functools.wraps(orig)
        def to(self: Any, *args: Any, **kwargs: Any) -> Any:
            args, kwargs, changed = _translate_to_args(args, kwargs)
            if not changed:
                return orig(self, *args, **kwargs)
            record("Tensor.to('cuda')")
            return demote_fp64(orig(self, *args, **kwargs), "Tensor.to('cuda')")

        return to

    p.wrap(torch.Tensor, "to", make)


def _install_tensor_cuda(p: Patcher, t: Target) -> None:
    import torch

    def cuda(self: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any) -> Any:
        new, _ = translate("cuda" if device is None else device)
        record("Tensor.cuda")
        out = self.to(new, non_blocking=non_blocking, **kwargs)
        return demote_fp64(out, "Tensor.cuda")

    p.set(torch.Tensor, "cuda", cuda)


def _install_is_cuda(p: Patcher, t: Target) -> None:
    import torch

    base: Any = torch._C.TensorBase.is_cuda

    def is_cuda(self: Any) -> bool:
        target = STATE.target
        if target is None or caller_sees_truth(2):
            return bool(base.__get__(self, type(self)))
        return self.device.type == target.device_type

    p.set(torch.Tensor, "is_cuda", property(is_cuda))


def _fp64_module(module: Any, api: str) -> Any:
    import torch

    target = STATE.target
    if target is None or "fp64" in target.dtypes:
        return module
    if any(x.dtype is torch.float64 for x in (*module.parameters(), *module.buffers())):
        unsupported(
            f"{api} (float64)", f"device {target.name!r} has no float64; module is float32 there"
        )
        module.float()
    return module


def _install_module_cuda(p: Patcher, t: Target) -> None:
    import torch

    def cuda(self: Any, device: Any = None) -> Any:
        new, _ = translate("cuda" if device is None else device)
        record("Module.cuda")
        return _fp64_module(self.to(new), "Module.cuda")

    p.set(torch.nn.Module, "cuda", cuda)


def _install_module_to(p: Patcher, t: Target) -> None:
    import torch

    def make(orig: Any) -> Any:
        @functools.wraps(orig)
        def to(self: Any, *args: Any, **kwargs: Any) -> Any:
            args, kwargs, changed = _translate_to_args(args, kwargs)
            if not changed:
                return orig(self, *args, **kwargs)
            record("Module.to('cuda')")
            return _fp64_module(orig(self, *args, **kwargs), "Module.to('cuda')")

        return to

    p.wrap(torch.nn.Module, "to", make)


def _install_generator(p: Patcher, t: Target) -> None:
    import torch

    real = torch._C.Generator

    def make(device: Any = "cpu") -> Any:
        new, changed = translate(device)
        if changed:
            record("torch.Generator('cuda')")
        return real(new)

    p.set(torch, "Generator", proxy_class("Generator", real, make))


def _install_pin_memory(p: Patcher, t: Target) -> None:
    import torch
    import torch.utils.data

    if not t.host:
        return  # the target has pinned host memory of its own

    def pin_memory(self: Any, device: Any = None) -> Any:
        record("Tensor.pin_memory")
        return self

    p.set(torch.Tensor, "pin_memory", pin_memory)

    def make(orig: Any) -> Any:
        @functools.wraps(orig)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("pin_memory"):
                record("DataLoader(pin_memory=True)")
                kwargs["pin_memory"] = False
            orig(self, *args, **kwargs)

        return __init__

    p.wrap(torch.utils.data.DataLoader, "__init__", make)


def _install_legacy_types(p: Patcher, t: Target) -> None:
    import torch

    proxies: dict[Any, Any] = {}
    for name in LEGACY_TYPES:
        host_type = getattr(torch, name)
        real = getattr(t.device_module(), name, host_type) if not t.host else host_type

        def make(*args: Any, _real: Any = real, _name: str = name) -> Any:
            record(f"torch.cuda.{_name}")
            return _real(*args)

        proxy = proxy_class(name, real, make, module="torch.cuda")
        proxies[proxy] = real
        p.set(torch.cuda, name, proxy)

    def make_type(orig: Any) -> Any:
        @functools.wraps(orig)
        def type_(self: Any, dtype: Any = None, non_blocking: bool = False, **kw: Any) -> Any:
            if dtype in proxies:
                record("Tensor.type(torch.cuda.*Tensor)")
                dtype = proxies[dtype]
            elif isinstance(dtype, str) and dtype.startswith("torch.cuda."):
                record("Tensor.type(torch.cuda.*Tensor)")
                dtype = "torch." + dtype[len("torch.cuda.") :]
            if dtype is None:
                return orig(self)
            return orig(self, dtype, non_blocking, **kw)

        return type_

    p.wrap(torch.Tensor, "type", make_type)


R = RuleKind.DEVICE_ARGUMENT
RULES: tuple[Rule, ...] = (
    Rule(api="torch.device", kind=R, install=_install_device,
         doc="torch.device('cuda'[, N]) / torch.device(N) give the target device; isinstance keeps working"),
    Rule(api="torch.* factories (device=...)", kind=R, install=_install_factories,
         doc="device='cuda', 'cuda:N', torch.device('cuda', N) or N in ~35 factories and Tensor.new_*"),
    Rule(api="Tensor.to", kind=R, install=_install_tensor_to,
         doc=".to('cuda'), .to(0), .to(device='cuda:1'), .to(torch.device('cuda'))"),
    Rule(api="Tensor.cuda", kind=R, install=_install_tensor_cuda, doc=".cuda([N]) moves to the target"),
    Rule(api="Tensor.is_cuda", kind=RuleKind.DEVICE_QUERY, install=_install_is_cuda,
         doc="True for tensors on the target (libraries in TRUTH_PACKAGES see the real answer)"),
    Rule(api="Module.cuda", kind=R, install=_install_module_cuda, doc="module.cuda([N]) moves to the target"),
    Rule(api="Module.to", kind=R, install=_install_module_to, doc="module.to('cuda' / N / device)"),
    Rule(api="torch.Generator", kind=RuleKind.RANDOM, install=_install_generator,
         doc="torch.Generator('cuda') is a generator on the target"),
    Rule(api="Tensor.pin_memory", kind=RuleKind.MEMORY, install=_install_pin_memory,
         doc="host targets: pin_memory() and DataLoader(pin_memory=True) are no-ops"),
    Rule(api="torch.cuda.FloatTensor", kind=RuleKind.LEGACY_TYPE, install=_install_legacy_types,
         doc="torch.cuda.<X>Tensor and .type(torch.cuda.<X>Tensor) map to the target's types"),
)  # fmt: skip
