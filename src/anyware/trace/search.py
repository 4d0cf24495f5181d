"""The analysis behind ``anyware trace diff``: errors, tolerances, first divergence, non-finite
search and the per-module summary. See :mod:`anyware.trace.compare` for the rules."""

from __future__ import annotations

from typing import Any

from anyware.trace.compare import (
    DTYPES,
    UNIT_ROUNDOFF,
    DiffOptions,
    DiffResult,
    _floor,
    _Side,
    errors,
)
from anyware.trace.load import Run, row_key

_FILLS = frozenset(
    {
        "aten.masked_fill",
        "aten.masked_fill_",
        "aten.fill_",
        "aten.fill",
        "aten.full",
        "aten.full_like",
        "aten.where",
        "aten.scalar_tensor",
        "aten.lift_fresh_copy",
        "aten.index_put_",
    }
)
_PHASE_RANK = {"forward": 0, "backward": 1, "optimizer": 2}


def analyse(ra: Run, rb: Run, opts: DiffOptions, calib: Any) -> DiffResult:
    import numpy as np
    import polars as pl

    from anyware.trace.align import align, key_hash

    b_df, al = align(ra.frame, rb.frame, opts.mapping)
    a, b = _Side.of(ra.frame, ra), _Side.of(b_df, rb)
    n = b_df.height
    partner = al.a_index.copy()
    # Inside a re-aligned module call, ops paired by name but of different shapes are not the
    # same tensor (autocast's casts, a split reduction): leave them unpaired.
    paired = np.nonzero((partner >= 0) & (al.loose >= 0))[0]
    partner[paired[a.shape[partner[paired]] != b.shape[paired]]] = -1
    through = np.zeros(n, dtype=bool)
    # Unmatched value-preserving ops in B (an extra cast) are compared against the A record of
    # their input, so an unintended down-cast is measured like any other op.
    cand = np.nonzero((partner < 0) & b.vp & b.is_out)[0]
    for r in cand:
        ins = b.inputs_of(int(r))
        if not ins:
            continue
        src = b.row_of(int(b.rank[r]), ins[-1] if b.is_copy[r] else ins[0])
        if src >= 0 and partner[src] >= 0 and a.numel[partner[src]] == b.numel[r]:
            partner[r] = partner[src]
            through[r] = True

    m = np.nonzero(partner >= 0)[0]
    err = np.full(n, np.nan)
    cos = np.full(n, np.nan)
    e, c = errors(a, partner[m], b, m)
    err[m], cos[m] = e, c

    ca, cb = a.code[partner[m]], b.code[m]
    ua, ub = a.u[partner[m]], b.u[m]
    floats = (ua > 0) & (ub > 0)
    changed = floats & (ua != ub)
    frac = float(changed.sum() / max(int(floats.sum()), 1))
    mods_b = b_df["module"].gather(m)  # distinct counts by polars' hash set, not a sort
    n_mods = mods_b.filter(pl.Series(floats)).n_unique()
    mod_frac = mods_b.filter(pl.Series(changed)).n_unique() / max(n_mods, 1)
    # Deliberate (a bf16 run, autocast) when the change spans most records or most modules;
    # one layer silently run in bf16 is neither, and is then judged as a fault.
    precision_change = opts.precision == "lower" or (
        opts.precision == "auto" and (frac > 0.5 or mod_frac >= 0.4)
    )
    u_table = np.append(np.array([UNIT_ROUNDOFF[d] for d in DTYPES]), 0.0)
    floor_table = np.append(np.array([_floor(d) for d in DTYPES]), 0.0)
    dt_eff = np.where((ua >= ub) == precision_change, ca, cb)
    if precision_change and changed.any():
        # A deliberate precision change (fp32 run against a bf16 run): every float record is
        # judged in the lower precision, also fp32 ones computed from bf16 values (the loss).
        low = np.where(ua >= ub, ca, cb)[changed]
        policy = int(np.bincount(low).argmax())
        coarser = u_table[dt_eff] < u_table[policy]
        dt_eff = np.where(floats & coarser, policy, dt_eff)
    u_eff = np.where(floats, u_table[dt_eff], 0.0)
    tol_m = floor_table[dt_eff]
    tol_m = np.where(u_eff > 0, tol_m, 0.0)
    if calib is not None:
        hb = b_df.select(key_hash())[:, 0].to_numpy()[m]
        keyed = pl.DataFrame({"rank": b.rank[m], "h": hb}).join(
            calib, on=["rank", "h"], how="left", maintain_order="left"
        )
        ce = keyed["cal_err"].fill_null(0.0).fill_nan(0.0).to_numpy()
        cu = keyed["cal_u"].fill_null(0.0).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.where(cu > 0, opts.margin * ce * u_eff / cu, 0.0)
        tol_m = np.maximum(tol_m, scaled)
    tol = np.full(n, np.nan)
    tol[m] = tol_m
    _update_tolerance(b, b_df, m, u_eff, tol)
    discrete = np.zeros(n, dtype=bool)
    discrete[m] = ~floats
    div = np.zeros(n, dtype=bool)
    div[m] = err[m] > tol[m]
    eligible = div & ~(discrete & precision_change)
    _contain(b, b_df, al.loose, div, eligible)

    first = _first(a, b, ra, b_df, al, partner, through, err, tol, div, eligible, opts)
    fd = None
    if first is not None:
        r0, kind, detail = first
        fd = _describe(a, b, ra, rb, b_df, int(r0), kind, partner, err, cos, tol, detail)
        full = _exact(ra, rb, b_df, int(r0)) if kind == "value" else None
        if full:
            fd["metrics"].update(full)

    unmatched = int((partner < 0).sum() + (~al.b_matched).sum())
    modules = _modules(b_df, m, err, tol)
    score = -np.nan_to_num(err[m] / np.maximum(tol[m], 1e-300), posinf=1e300)
    top = np.argpartition(score, 10)[:10] if len(m) > 10 else np.arange(len(m))
    worst_rows = m[top[np.argsort(score[top], kind="stable")]]
    worst = [
        {
            "key": row_key(b_df.row(int(r), named=True)),
            "err": _f(err[r]),
            "tol": _f(tol[r]),
            "cosine": _f(cos[r]),
        }
        for r in worst_rows
        if div[r]
    ]
    notes = []
    if al.renamed:
        notes.append(f"modules paired by position: {al.renamed}")
    if al.realigned_groups:
        notes.append(
            f"{al.realigned_groups} module call(s) had different op sequences and were aligned in order"
        )
    return DiffResult(
        first_divergence=fd,
        compared=len(m),
        unmatched=unmatched,
        divergent=int(div.sum()),
        structure_differs_at=al.structure_differs_at,
        precision_change=precision_change,
        calibrated=calib is not None,
        modules=modules,
        worst=worst,
        nonfinite={"a": first_nonfinite(ra, a), "b": first_nonfinite(rb, b)},
        ranks=[int(x) for x in np.unique(b.rank)],
        records=ra.frame.height + rb.frame.height,
        bytes=ra.nbytes + rb.nbytes,
        notes=notes,
    )


def _contain(b: _Side, b_df: Any, loose: Any, div: Any, eligible: Any) -> None:
    """Inside a module call whose op sequence differs between the runs (another
    decomposition, a split reduction), ops are paired by name only and may compare partial
    results. Their differences count only if they leak: a divergent record outside the call
    consumes one of its records."""
    import numpy as np

    if not (loose >= 0).any():
        return
    leaking: set[int] = set()
    for r in np.nonzero(div & (loose < 0))[0]:
        for s in b.inputs_of(int(r)):
            q = b.row_of(int(b.rank[r]), s)
            if q >= 0 and loose[q] >= 0:
                leaking.add(int(loose[q]))
    contained = (loose >= 0) & ~np.isin(loose, list(leaking))
    eligible &= ~contained


def _update_tolerance(b: _Side, b_df: Any, m: Any, u_eff: Any, tol: Any) -> None:
    """An optimizer update ``p_after − p_before`` is the difference of two rounded tensors, so
    it carries a rounding error of about ``u·‖p‖`` however small the step: relative to the
    update that is ``u·‖p‖/‖Δp‖`` (an fp32 LayerNorm weight of 1.0 moved by 1e-4 is known to
    ~6e-4 only). Add that cancellation term, ×4 for the two roundings and their spread."""
    import numpy as np

    upd = np.nonzero(b_df["slot"].str.starts_with("update:").to_numpy())[0]
    if len(upd) == 0:
        return
    u_of = np.zeros(len(tol))
    u_of[m] = u_eff
    has = b.off[upd + 1] > b.off[upd]
    upd = upd[has & ~np.isnan(tol[upd]) & (b.l2[upd] > 0)]
    want = b.rank[upd].astype(np.int64) * (1 << 40) + b.flat[b.off[upd + 1] - 1]
    q = np.clip(np.searchsorted(b.key, want), 0, len(b.key) - 1)
    ok = b.key[q] == want
    upd, q = upd[ok], q[ok]
    tol[upd] += 4 * u_of[upd] * b.l2[q] / b.l2[upd]


def _f(x: Any) -> float | None:
    import math

    x = float(x)
    return None if math.isnan(x) else (1e308 if math.isinf(x) else x)


def _first(
    a: _Side,
    b: _Side,
    ra: Run,
    b_df: Any,
    al: Any,
    partner: Any,
    through: Any,
    err: Any,
    tol: Any,
    div: Any,
    eligible: Any,
    opts: DiffOptions,
) -> tuple[int, str, int] | None:
    import numpy as np

    ph = b_df["phase"]  # String or Categorical: compared, never replaced
    phase = np.full(b_df.height, 3, dtype=np.int8)
    for name, rank in _PHASE_RANK.items():
        phase[(ph == name).to_numpy()] = rank
    cands = np.nonzero(div)[0]
    if len(cands) == 0:
        return None
    order = cands[np.lexsort((b.rank[cands], b.seq[cands], phase[cands], b.step[cands]))]
    drift = False  # an earlier record already differed (accepted noise or ineligible)
    for r in order[:10_000]:
        if not eligible[r]:
            drift = True
            continue
        rank = int(b.rank[r])
        agree = True
        in_err = 0.0
        culprit: tuple[int, str, int] | None = None
        ins = b.inputs_of(int(r))
        if not ins and drift:
            # No lineage (a module input, a parameter gradient) and the runs have already
            # drifted apart: this difference is inherited, not caused here.
            continue
        for s in ins:
            q = b.row_of(rank, s)
            if q < 0:
                continue
            if partner[q] >= 0:
                if div[q]:
                    agree = False
                    break
                in_err = max(in_err, float(err[q]))
            elif b.is_out[q] and culprit is None and _inputs_agree(b, q, partner, div):
                culprit = (q, "extra_op", -1)
        if not agree:
            drift = True
            continue
        j = int(partner[r])
        if culprit is None and not through[r] and j >= 0:
            for s in a.inputs_of(j):
                qa = a.row_of(rank, s)
                if qa >= 0 and not al.b_matched[qa] and a.is_out[qa] and not a.vp[qa]:
                    culprit = (int(r), "missing_op", qa)
                    break
        if culprit is not None:
            return culprit
        if np.isfinite(err[r]) and err[r] <= opts.amplification * in_err:
            drift = True
            continue
        return int(r), "value", -1
    return None


def _inputs_agree(b: _Side, q: int, partner: Any, div: Any) -> bool:
    for s in b.inputs_of(int(q)):
        p = b.row_of(int(b.rank[q]), s)
        if p >= 0 and (partner[p] < 0 or div[p]):
            return False
    return True


def _describe(
    a: _Side,
    b: _Side,
    ra: Run,
    rb: Run,
    b_df: Any,
    r: int,
    kind: str,
    partner: Any,
    err: Any,
    cos: Any,
    tol: Any,
    detail: int,
) -> dict[str, Any]:
    a_df = ra.frame
    row = b_df.row(r, named=True)
    src, src_run = row, rb
    metrics: dict[str, Any] = {"kind": kind}
    if kind == "missing_op":
        src, src_run = a_df.row(detail, named=True), ra
        metrics["note"] = (
            f"{src['op']} runs in A but has no counterpart in B; its consumer {row['op']} diverges"
        )
        r = r  # the consumer carries the measured error
    elif kind == "extra_op":
        metrics["note"] = "runs in B only, with inputs that agree with A; its consumers diverge"
    j = int(partner[r])
    if j >= 0:
        ra_ = a_df.row(j, named=True)
        la, lb = ra_["l2"], row["l2"] if kind != "extra_op" else src["l2"]
        metrics.update(
            rel_l2=_f(err[r]),
            cosine=_f(cos[r]),
            tolerance=_f(tol[r]),
            max_abs_err_lb=_f(max(abs(ra_["max"] - row["max"]), abs(ra_["min"] - row["min"]))),
            d_mean=_f(row["mean"] - ra_["mean"]),
            l2_a=_f(la),
            l2_b=_f(lb),
            min_a=_f(ra_["min"]),
            min_b=_f(row["min"]),
            max_a=_f(ra_["max"]),
            max_b=_f(row["max"]),
            nan_a=ra_["nan"],
            nan_b=row["nan"],
            inf_a=ra_["inf"],
            inf_b=row["inf"],
            dtype_a=ra_["dtype"],
            dtype_b=row["dtype"],
        )
    module, op = src["module"], src["op"]
    if src["level"] == "module" and src["role"] == "in" and src["phase"] != "optimizer" and module:
        # A module's input (forward) or output gradient (backward) that diverges while
        # everything before agreed was computed by the enclosing module's own code between
        # its child calls: that is where to look.
        parent = module.rpartition(".")[0]
        metrics["note"] = f"input of {module} ({op}), computed in {parent or '(root)'}"
        owner = a_df.filter((a_df["module"] == parent) & (a_df["level"] == "module")).head(1)
        module, op = parent, (owner["op"][0] if owner.height else op)
    return {
        "module": module,
        "op": op,
        "phase": src["phase"],
        "step": int(src["step"]),
        "rank": int(src["rank"]),
        "call_index": int(src["call_index"]),
        "key": row_key(src),
        "slot": src["slot"],
        "metrics": metrics,
        "location": src_run.location(int(src["rank"]), int(src["seq"])),
    }


def _exact(ra: Run, rb: Run, b_df: Any, r: int) -> dict[str, Any] | None:
    """Exact metrics when both runs saved the whole tensor (``--tensors``)."""
    key, rank = row_key(b_df.row(r, named=True)), int(b_df["rank"][r])
    ta, tb = ra.tensors(rank).get(key), rb.tensors(rank).get(key)
    if ta is None or tb is None or ta.shape != tb.shape:
        return None
    x, y = ta.double().flatten(), tb.double().flatten()
    d = (x - y).abs()
    rel = d / y.abs().clamp_min(1e-12)
    return {
        "exact": True,
        "cosine": float((x @ y) / (x.norm() * y.norm()).clamp_min(1e-300)),
        "max_abs_err": float(d.max()),
        "max_rel_err": float(rel.max()),
        "rel_l2": float((x - y).norm() / x.norm().clamp_min(1e-300)),
        "within_0.1pct": float((rel <= 1e-3).double().mean()),
        "within_0.5pct": float((rel <= 5e-3).double().mean()),
    }


def _modules(b_df: Any, m: Any, err: Any, tol: Any) -> list[dict[str, Any]]:
    import numpy as np
    import polars as pl

    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(tol[m] > 0, err[m] / tol[m], np.where(err[m] > 0, np.inf, 0.0))
    # Grouped in polars on the module column as it is: no per-row Python strings.
    df = b_df.select("module").with_row_index("_r").filter(pl.Series(_mask(b_df.height, m)))
    df = df.with_columns(pl.Series("ratio", np.nan_to_num(ratio, posinf=1e300)))
    agg = (
        df.group_by("module")
        .agg(
            pl.col("ratio").max().alias("max_ratio"),
            (pl.col("ratio") > 1).sum().alias("divergent"),
            pl.len().alias("records"),
        )
        .sort("module")
    )
    return agg.to_dicts()


def _mask(n: int, idx: Any) -> Any:
    import numpy as np

    out = np.zeros(n, dtype=bool)
    out[idx] = True
    return out


def first_nonfinite(run: Run, side: _Side | None = None) -> dict[str, Any] | None:
    """The earliest record (step, order, rank) with a NaN/Inf whose inputs were all finite."""
    import numpy as np
    import polars as pl

    df = run.frame
    # NaN first; an Inf only from an op that is not writing one on purpose (an attention
    # mask's masked_fill(-inf) is not a numerical problem).
    flag = (pl.col("nan") > 0) | ((pl.col("inf") > 0) & ~pl.col("op").is_in(list(_FILLS)))
    bad = df.with_row_index("_r").filter(flag)
    if bad.height == 0:
        return None
    side = side if side is not None else _Side.of(df, run)
    is_bad = df.select(flag).to_series().to_numpy()
    bad = bad.sort(["step", "seq", "rank"])
    for row in bad.head(10_000).iter_rows(named=True):
        ok = True
        for s in side.inputs_of(int(row["_r"])):
            q = side.row_of(int(row["rank"]), s)
            if q >= 0 and is_bad[q]:
                ok = False
                break
        if ok:
            return {
                "rank": int(row["rank"]),
                "step": int(row["step"]),
                "phase": row["phase"],
                "module": row["module"],
                "op": row["op"],
                "call_index": int(row["call_index"]),
                "key": row_key(row),
                "nan": int(row["nan"]),
                "inf": int(row["inf"]),
                "location": run.location(int(row["rank"]), int(row["seq"])),
            }
    del np
    return None
