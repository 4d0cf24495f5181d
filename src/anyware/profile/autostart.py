"""``start()`` for ``anyware run --profile DIR``: called once per process by
:func:`anyware._autostart.start_features` when ``ANYWARE_PROFILE_DIR`` is set.

Idempotent and cheap until the first optimizer step; a failure here prints one warning (the
caller catches it) and the user's program runs on unprofiled.
"""

from __future__ import annotations

import atexit

from anyware.profile.capture import Capture, CaptureConfig

_capture: Capture | None = None


def start() -> Capture | None:
    """Start profiling this process per the environment; returns the capture (or None when
    ``ANYWARE_PROFILE_DIR`` is unset)."""
    global _capture
    if _capture is not None:
        return _capture
    config = CaptureConfig.from_env()
    if config is None:
        return None
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from anyware import runtime

    _capture = Capture(config, runtime.current().device_type)
    register_optimizer_step_post_hook(_capture.on_optimizer_step)
    atexit.register(_capture.stop)
    return _capture


def current() -> Capture | None:
    return _capture


def step() -> None:
    """Mark a step boundary by hand (loops without an optimizer)."""
    if _capture is not None:
        _capture.step()
