"""Training-health monitor: per-rank step timing, loss, gradient norm and memory from inside each
training process; anomaly checks, a live dashboard and Prometheus metrics in the aggregator.

>>> from anyware import monitor
>>> mon = monitor.attach(model, optimizer)      # reads ANYWARE_MONITOR_ADDR / _EVENTS
>>> ...train...                                  # nothing else to call; steps end at opt.step()

``anyware run --monitor`` does the same with no code change (see :mod:`.autostart`), and
``anyware monitor serve`` runs the aggregator. Importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anyware.monitor.config import CheckConfig, MonitorConfig

if TYPE_CHECKING:
    from anyware.monitor.collector import Monitor

__all__ = ["CheckConfig", "MonitorConfig", "attach", "config_from_env", "detach"]


def config_from_env(**overrides: Any) -> MonitorConfig:
    """A :class:`MonitorConfig` from ``ANYWARE_MONITOR_ADDR``/``_EVENTS``/``_TOKEN``, with
    keyword overrides."""
    from pathlib import Path

    from anyware import _env

    events = _env.MONITOR_EVENTS.get()
    values: dict[str, Any] = {
        "addr": _env.MONITOR_ADDR.get(),
        "events_dir": Path(events) if events else None,
        "token": _env.MONITOR_TOKEN.get(),
    }
    values.update(overrides)
    return MonitorConfig(**values)


def attach(
    model: Any = None,
    optimizer: Any = None,
    *,
    config: MonitorConfig | None = None,
    **overrides: Any,
) -> Monitor:
    """Start monitoring this process (idempotent) and return its :class:`Monitor`.

    With a model, its top-level forward is timed; with an optimizer, its ``step()`` ends each
    training step. With neither, every optimizer and top-level module is watched (what
    ``anyware run --monitor`` does). Works under plain ``torchrun`` too: the aggregator's address
    comes from ``ANYWARE_MONITOR_ADDR``. Keyword overrides (``flops_per_step=...``,
    ``peak_flops=...``, ``ship_hz=...``) go into the config.
    """
    import atexit

    from anyware.monitor import collector

    cfg = config if config is not None else config_from_env(**overrides)
    existing = collector.active()
    mon = collector.activate(cfg)
    if existing is None:
        atexit.register(mon.close)
    if model is None and optimizer is None:
        if not mon._global_handles:
            mon.watch_globally()
        return mon
    if mon._global_handles:
        mon.unwatch_globally()
    if model is not None:
        mon.watch_model(model)
    if optimizer is not None:
        mon.watch_optimizer(optimizer)
    else:
        from torch.optim import optimizer as optim_mod

        mon._global_handles = [
            optim_mod.register_optimizer_step_pre_hook(mon.on_optimizer_pre),
            optim_mod.register_optimizer_step_post_hook(mon.on_optimizer_post),
        ]
    return mon


def detach() -> None:
    """Stop the process's monitor: hooks removed, remaining events shipped, goodbye sent."""
    from anyware.monitor import collector

    mon = collector.active()
    if mon is not None:
        mon.close()
