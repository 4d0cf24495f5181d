"""Post-training quantisation: presets that swap ``nn.Linear`` for a quantised linear.

A preset names what is stored for weights and what activations are rounded to at run time:

==========  ==========================================  ==================================
preset      weights                                     activations
==========  ==========================================  ==================================
``w8a8``    INT8, one scale per output channel          INT8, one scale per token
``w4a16``   INT4, one scale per group of 128 along K    unchanged
``w4a4``    INT4, one scale per group of 128 along K    INT4, one scale per token
``mxfp8``   MXFP8 E4M3 (blocks of 32, E8M0 scales)      MXFP8 E4M3
``mxfp4``   MXFP4 E2M1 (blocks of 32, E8M0 scales)      MXFP4 E2M1
==========  ==========================================  ==================================

Rounding is round-to-nearest by default, so the numbers isolate the format. Options sharpen
the INT presets: ``act_clip`` (QuaRot's activation clip ratio), ``calibration=`` (a per-row
weight clip search that minimises the layer's output error on calibration inputs) and
``weights="gptq"`` (GPTQ with each layer's Hessian from the calibration inputs instead of the
clip search; ``gptq.py``). GPTQ sees each linear's input exactly as its quantised weight will:
after the QuaRot fuse and after the online Hadamard, so rotated and unrotated models get the
same treatment.

**Rotation** (``rotate=True``, QuaRot): 4-bit per-token activations fail on the few
channels that are 10-100× larger than the rest, because one scale per token must cover them.
An orthogonal ``R = H·diag(s)`` (randomised Walsh–Hadamard) spreads each outlier over all
channels; since ``W x = (W Rᵀ)(R x)`` the layer's output is unchanged in exact arithmetic.

* When the model's residual-stream wiring is known (``quarot.layout_for``: the project's GPT is
  registered; pass ``layout=`` for another model), the rotation is QuaRot's: LayerNorms become
  weightless RMSNorms (writers centred, ``γ``/``β`` folded into the readers), the stream itself
  is rotated inside the embedding and linear weights (no online transform for ``qkv``/``fc``),
  and the off-stream inputs of the out- and down-projections get an online Hadamard whose
  weight half is folded. The model is rewritten in place; it computes the same function to
  fp32 rounding (``quarot.py`` has the algebra).
* ``rotate="learned"`` (SpinQuant, ``spinquant.py``): the fused rotation above, then a further
  orthogonal ``U`` of the stream learned on the calibration inputs (Cayley-parametrised Adam on
  the W4A4 fake-quantised task loss) and folded the same way; the weights are then rounded by
  the same quantiser as every other arm.
* Otherwise every converted linear gets its own online rotation ``R x`` before the activation
  is quantised, with ``W Rᵀ`` folded into its weights. That is exact for any model, but the
  quantised activation still carries the LayerNorm's ``γ``/``β``.

Widths that are not powers of two use a block-diagonal Hadamard (see ``hadamard.py``).

Activation quantisation is emulated exactly (fake quantisation, fp32 GEMM); the weights are
kept both as ``QuantizedTensor`` (what a kernel would read) and dequantised for the emulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from anyware.formats.api import QuantizedTensor, dequantize, fake_quantize, quantize_tensor
from anyware.formats.gptq import gptq_quantize, hessian
from anyware.formats.hadamard import hadamard_transform, random_signs
from anyware.formats.quarot import FuseReport, ResidualLayout, fuse_rotation, layout_for
from anyware.formats.spec import parse_choice
from anyware.formats.spinquant import LearnedRotation, QuantSpec, learn_rotation, rotate_stream
from anyware.formats.training import plan_linear_swaps, swap_modules


class Preset(StrEnum):
    W8A8 = "w8a8"
    W4A16 = "w4a16"
    W4A4 = "w4a4"
    MXFP8 = "mxfp8"
    MXFP4 = "mxfp4"


class RotateMode(StrEnum):
    NONE = "none"
    """No rotation."""
    HADAMARD = "hadamard"
    """QuaRot's random Hadamard (``rotate=True``): fused when the layout is known, else online."""
    LEARNED = "learned"
    """SpinQuant: the fused Hadamard, then a stream rotation learned on the calibration inputs
    (``spinquant.py``); needs the model's layout and ``calibration=``."""


class WeightRounding(StrEnum):
    RTN = "rtn"
    """Round-to-nearest (with ``calibration=``: after the per-row clip search)."""
    GPTQ = "gptq"
    """GPTQ error feedback against each layer's calibration Hessian (needs ``calibration=``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Scheme:
    weight_fmt: str
    weight_opts: dict[str, Any]
    act_fmt: str | None
    act_opts: dict[str, Any]


def _scheme(preset: Preset, group_size: int | None) -> _Scheme:
    g = group_size if group_size is not None else 128
    if preset is Preset.W8A8:
        return _Scheme(weight_fmt="int8", weight_opts={}, act_fmt="int8", act_opts={})
    if preset is Preset.W4A16:
        return _Scheme(weight_fmt="int4", weight_opts={"group_size": g}, act_fmt=None, act_opts={})
    if preset is Preset.W4A4:
        # per-token activations: QuaRot's setting, where outliers hurt most
        return _Scheme(
            weight_fmt="int4", weight_opts={"group_size": g}, act_fmt="int4",
            act_opts={"group_size": None},
        )  # fmt: skip
    fmt = "mxfp8_e4m3" if preset is Preset.MXFP8 else "mxfp4_e2m1"
    return _Scheme(weight_fmt=fmt, weight_opts={}, act_fmt=fmt, act_opts={})


@dataclass(frozen=True, slots=True, kw_only=True)
class PTQConfig:
    preset: Preset
    """Which formats (table above)."""
    rotate: bool | str = False
    """``True`` / ``"hadamard"``: randomised Hadamard rotation (QuaRot; weights folded,
    activations online); ``"learned"``: SpinQuant's learned stream rotation on top of it;
    ``False`` / ``"none"``: none. Normalised to a bool; the kind is in ``mode``."""
    group_size: int | None = None
    """INT4 weight group along K (default 128)."""
    skip: tuple[str, ...] = ("head", "lm_head")
    """Module names kept in high precision (the output head by default)."""
    seed: int = 0
    """Seed of the rotation's random signs."""
    layout: ResidualLayout | None = None
    """Residual-stream wiring for QuaRot's fused rotation (default: the registered layout of
    the model's class; none registered: per-linear online rotation)."""
    act_clip: float = 1.0
    """INT activations (``w8a8``, ``w4a4``) are clipped to this fraction of each token's amax
    before rounding (QuaRot uses 0.9: the largest value loses a little, every other gets a
    finer step)."""
    calibration: Sequence[Any] | None = None
    """Inputs (each a tuple of ``model(*args)`` arguments or one tensor) for a GPTQ-free clipping
    search of INT weights: per output row, the clip ratio in ``CLIP_GRID`` that minimises the
    error of the layer's *output* on these inputs, ``‖(Q(clip(w)) − w) Xᵀ‖²``. Minimising
    the weights' own MSE instead clips weights that the outputs need (measured: it made RTN
    W4A4 worse, ppl 1.4085 → 1.4296). With ``weights="gptq"`` they build GPTQ's Hessians
    instead."""
    weights: WeightRounding = WeightRounding.RTN
    """How INT weights are rounded: ``rtn`` or ``gptq`` (Frantar et al.; blocks of 128, 1%
    dampening)."""
    act_order: bool = False
    """GPTQ only: visit columns in order of decreasing Hessian diagonal."""
    sequential: bool = True
    """GPTQ only: quantise the linears one at a time (registration order), each calibrated on
    the inputs it gets once the earlier ones are quantised, as GPTQ and QuaRot do (weights
    only: activations stay full precision while calibrating). False: every Hessian comes from
    the unquantised model (one calibration pass)."""
    rotation_steps: int = 100
    """``rotate="learned"`` only: Adam steps on the Cayley parameter (one calibration input
    each)."""
    rotation_lr: float = 1e-4
    """``rotate="learned"`` only: Adam's learning rate on the Cayley parameter. Chosen by the
    calibration loss after 100 steps on the trained GPT (W4A4, GPTQ, clip 0.9, seed 0) from
    1e-2 / 3e-3 / 1e-3 / 3e-4 / 1e-4 / 5e-5: 0.3163 / 0.3165 / 0.3086 / 0.2988 / 0.2887 /
    0.2976 from 0.3047 at the Hadamard (the larger steps leave the basin)."""
    mode: RotateMode = field(default=RotateMode.NONE, init=False)
    """The rotation ``rotate`` asked for."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", parse_choice(Preset, self.preset, "PTQ preset"))
        r = self.rotate
        mode = (
            (RotateMode.HADAMARD if r else RotateMode.NONE)
            if isinstance(r, bool)
            else parse_choice(RotateMode, r, "PTQ rotate")
        )
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "rotate", mode is not RotateMode.NONE)
        if mode is RotateMode.LEARNED:
            if self.calibration is None or len(self.calibration) == 0:
                raise ValueError(
                    "rotate='learned' needs calibration= inputs (training text, never the "
                    "evaluation text) to learn the rotation on"
                )
            if self.rotation_steps < 0:
                raise ValueError(f"rotation_steps must be >= 0, got {self.rotation_steps}")
            if not self.rotation_lr > 0:
                raise ValueError(f"rotation_lr must be positive, got {self.rotation_lr}")
        elif (self.rotation_steps, self.rotation_lr) != (100, 1e-4):
            raise ValueError("rotation_steps and rotation_lr apply to rotate='learned' only")
        object.__setattr__(
            self, "weights", parse_choice(WeightRounding, self.weights, "PTQ weights")
        )
        if self.weights is WeightRounding.GPTQ:
            if self.preset in (Preset.MXFP8, Preset.MXFP4):
                raise ValueError(f"weights='gptq' rounds INT weights, not {self.preset}")
            if self.calibration is None:
                raise ValueError(
                    "weights='gptq' needs calibration= inputs to build each layer's Hessian"
                )
        if self.act_order and self.weights is not WeightRounding.GPTQ:
            raise ValueError("act_order applies to weights='gptq' only")
        if not self.sequential and self.weights is not WeightRounding.GPTQ:
            raise ValueError("sequential=False applies to weights='gptq' only")
        int_act = self.preset in (Preset.W8A8, Preset.W4A4)
        if not 0.0 < self.act_clip <= 1.0:
            raise ValueError(f"act_clip must be in (0, 1], got {self.act_clip}")
        if self.act_clip != 1.0 and not int_act:
            raise ValueError(f"act_clip applies to INT activations (w8a8, w4a4), not {self.preset}")
        if self.calibration is not None and self.preset in (Preset.MXFP8, Preset.MXFP4):
            raise ValueError(f"calibration= drives the INT weight clip search, not {self.preset}")
        if self.layout is not None and not self.rotate:
            raise ValueError("PTQ layout= only applies with rotate=True")
        if self.group_size is not None and self.group_size <= 0:
            raise ValueError(f"group_size must be positive, got {self.group_size}")


#: clip ratios the calibrated weight search tries (1.0 = plain round-to-nearest)
CLIP_GRID = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)


def search_weight_clip(
    w: torch.Tensor, x: torch.Tensor, fmt: str, opts: dict[str, Any]
) -> torch.Tensor:
    """``w`` with each row clipped at the ``CLIP_GRID`` ratio of its amax that minimises the
    squared error of ``x @ Q(w)ᵀ`` against ``x @ wᵀ`` (rows are independent: output channel
    ``i`` depends only on row ``i``)."""
    amax = w.abs().amax(-1, keepdim=True)
    best, best_err = w, torch.full((w.shape[0], 1), torch.inf, device=w.device)
    for r in CLIP_GRID:
        c = torch.minimum(torch.maximum(w, -r * amax), r * amax)
        err = ((fake_quantize(c, fmt, **opts) - w) @ x.T).pow(2).sum(-1, keepdim=True)
        better = err < best_err
        best, best_err = torch.where(better, c, best), torch.where(better, err, best_err)
    return best


class QuantLinear(nn.Module):
    """A linear layer with stored quantised weights and fake-quantised activations."""

    def __init__(
        self, linear: nn.Linear, config: PTQConfig, seed: int, *,
        online_rotate: bool | None = None, calib_x: torch.Tensor | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.scheme = _scheme(config.preset, config.group_size)
        self.preset = config.preset
        w = linear.weight.detach().float()
        self.signs: torch.Tensor | None = None
        if bool(config.rotate) if online_rotate is None else online_rotate:
            self.signs = random_signs(self.in_features, seed=seed).to(w.device)
            w = hadamard_transform(w, signs=self.signs)  # W·Rᵀ, row by row
        self.act_clip = config.act_clip
        self.quantize_acts = True
        """False while sequential GPTQ calibrates the layers after this one."""
        if calib_x is not None:
            x = (
                calib_x.float()
                if self.signs is None
                else hadamard_transform(calib_x, signs=self.signs)
            )
        if calib_x is not None and config.weights is WeightRounding.GPTQ:
            self.qweight: QuantizedTensor = gptq_quantize(
                w, hessian(x), self.scheme.weight_fmt,
                group_size=self.scheme.weight_opts.get("group_size"), act_order=config.act_order,
            )  # fmt: skip
        else:
            if calib_x is not None:
                w = search_weight_clip(w, x, self.scheme.weight_fmt, self.scheme.weight_opts)
            self.qweight = quantize_tensor(w, self.scheme.weight_fmt, **self.scheme.weight_opts)
        self.weight: torch.Tensor
        self.register_buffer("weight", dequantize(self.qweight, dtype=torch.float32))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def extra_repr(self) -> str:
        rot = ", rotated" if self.signs is not None else ""
        return f"in={self.in_features}, out={self.out_features}, preset={self.preset}{rot}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        if self.signs is not None:
            h = hadamard_transform(h, signs=self.signs)
        if self.scheme.act_fmt is not None and self.quantize_acts:
            if self.act_clip != 1.0:
                a = h.abs().amax(-1, keepdim=True) * self.act_clip
                h = torch.minimum(torch.maximum(h, -a), a)
            h = fake_quantize(h, self.scheme.act_fmt, **self.scheme.act_opts)
        y = h @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype)


@dataclass(frozen=True, slots=True, kw_only=True)
class PTQReport:
    preset: Preset
    rotate: bool
    converted: list[str] = field(default_factory=list)
    """Dotted names of the swapped linears."""
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    """``(name, type, reason)`` for each parameter-holding leaf module left in high precision."""
    rotation: str = "none"
    """``none``, ``quarot`` (stream rotation fused into the weights), ``learned`` (SpinQuant:
    a learned stream rotation, fused the same way) or ``online`` (per linear)."""
    online: list[str] = field(default_factory=list)
    """Converted linears whose input gets an online Hadamard."""
    fused: FuseReport | None = None
    """What the QuaRot fuse rewrote (norms, untied weights), when it ran."""
    learned: LearnedRotation | None = None
    """``rotate="learned"``: iterations and the calibration loss before/after learning."""
    calibrated: bool = False
    """True when INT weights used the calibration inputs (clip search or GPTQ)."""
    weights: WeightRounding = WeightRounding.RTN
    """How INT weights were rounded."""


#: calibration rows kept per linear (evenly spaced): the search costs |grid| GEMMs of this size
_CALIB_ROWS = 4096


@torch.no_grad()
def _linear_inputs(
    model: nn.Module, names: list[str], calibration: Sequence[Any]
) -> dict[str, torch.Tensor]:
    """The inputs each named linear sees when ``model`` runs on the calibration inputs."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [
        model.get_submodule(n).register_forward_hook(
            lambda _m, inp, _out, n=n: seen[n].append(inp[0].detach().flatten(0, -2).float())
        )
        for n in names
    ]
    try:
        for args in calibration:
            model(*(args if isinstance(args, (tuple, list)) else (args,)))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for n, xs in seen.items():
        if not xs:
            raise ValueError(f"calibration never reached {n!r}; pass inputs that run the model")
        x = torch.cat(xs)
        step = max(1, x.shape[0] // _CALIB_ROWS)
        out[n] = x[::step][:_CALIB_ROWS]
    return out


@torch.no_grad()
def quantize_model(model: nn.Module, preset: str | Preset, **options: Any) -> PTQReport:
    """Apply ``preset`` to every ``nn.Linear`` of ``model`` in place (``PTQConfig`` options:
    ``rotate``, ``group_size``, ``skip``, ``seed``, ``layout``, ``act_clip``, ``calibration``,
    ``weights``, ``act_order``, ``sequential``). Options and the layout are
    validated, and all new modules built, before any is swapped in, so a bad input leaves the
    model untouched (the QuaRot fuse, which runs first, keeps the model's function)."""
    config = PTQConfig(preset=preset, **options)  # type: ignore[arg-type]
    convert, skipped = plan_linear_swaps(model, config.skip)
    layout = (config.layout or layout_for(model)) if config.rotate else None
    fused = None
    readers: set[str] = set()
    if config.mode is RotateMode.LEARNED and layout is None:
        raise ValueError(
            f"rotate='learned' rotates the residual stream, and no layout is registered for "
            f"{type(model).__name__}; pass layout=ResidualLayout(...) or use rotate=True"
        )
    learned = None
    if layout is not None:
        # exact rewrite (same function), validated before it changes anything
        fused = fuse_rotation(model, layout, seed=config.seed)
        readers = {r for _, rs in layout.norms for r in rs}
        if config.mode is RotateMode.LEARNED:
            assert config.calibration is not None
            u, learned = learn_rotation(
                model, layout, _learning_specs(model, convert, readers, config),
                config.calibration, steps=config.rotation_steps, lr=config.rotation_lr,
            )  # fmt: skip
            rotate_stream(model, layout, u)  # exact too: the norms are weightless now
    calib = config.calibration
    sequential = calib is not None and config.weights is WeightRounding.GPTQ and config.sequential
    inputs = {} if calib is None or sequential else _linear_inputs(model, convert, calib)
    new: dict[str, QuantLinear] = {}
    originals: dict[str, nn.Module] = {}
    online: list[str] = []
    try:
        for i, name in enumerate(convert):
            lin = model.get_submodule(name)
            assert isinstance(lin, nn.Linear)
            rot = config.mode is not RotateMode.NONE and name not in readers
            if rot:
                online.append(name)
            x = inputs.get(name)
            if sequential:
                assert calib is not None
                x = _linear_inputs(model, [name], calib)[name]
            q = QuantLinear(lin, config, seed=config.seed * 7919 + i, online_rotate=rot, calib_x=x)
            new[name] = q
            if sequential:
                # the next layers calibrate on this one's quantised weights
                q.quantize_acts = False
                originals[name] = lin
                swap_modules(model, {name: q})
    except BaseException:
        swap_modules(model, originals)  # a failure leaves the linears as they were
        raise
    for q in new.values():
        q.quantize_acts = True
    swap_modules(model, new)
    rotation = "none" if not config.rotate else "quarot" if fused is not None else "online"
    return PTQReport(
        preset=config.preset, rotate=bool(config.rotate), converted=convert, skipped=skipped,
        rotation="learned" if learned is not None else rotation, online=online, fused=fused,
        learned=learned, calibrated=calib is not None, weights=config.weights,
    )  # fmt: skip


def _learning_specs(
    model: nn.Module, convert: list[str], readers: set[str], config: PTQConfig
) -> dict[str, QuantSpec]:
    """How each converted linear is fake-quantised while the rotation is learned: exactly as its
    ``QuantLinear`` will be (same online signs, act clip and formats); weights round-to-nearest,
    or full precision when GPTQ rounds them afterwards (SpinQuant's choice)."""
    scheme = _scheme(config.preset, config.group_size)
    specs = {}
    for i, name in enumerate(convert):
        lin = model.get_submodule(name)
        assert isinstance(lin, nn.Linear)
        signs = (
            None if name in readers else random_signs(lin.in_features, seed=config.seed * 7919 + i)
        )
        specs[name] = QuantSpec(
            act_fmt=scheme.act_fmt, act_opts=scheme.act_opts, act_clip=config.act_clip,
            weight_fmt=None if config.weights is WeightRounding.GPTQ else scheme.weight_fmt,
            weight_opts=scheme.weight_opts, signs=signs,
        )  # fmt: skip
    return specs
