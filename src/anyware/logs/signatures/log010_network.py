"""LOG010 network: a connection or InfiniBand/RoCE transfer failed.

Detects ``Connection reset by peer``, ``Connection refused``, ``No route to host``,
``Network is unreachable``, ``NET/IB : Got completion from peer ... with error 12``,
``IBV_WC_RETRY_EXC_ERR`` / ``transport retry counter exceeded``, ``ibv_poll_cq`` failures and
link-down notices. IB completion errors name the failing host's fabric; a reset by peer is
often what a *victim* sees after its peer died, which the time order sorts out.
Fix: check the named host's link (``ibstat``, switch port counters) and the firewall/ports.
"""

from __future__ import annotations

from anyware.logs.model import Category, Rule, Signature

SIGNATURE = Signature(
    code="LOG010",
    name="network error",
    category=Category.NETWORK,
    needles=(
        "Connection reset",
        "Connection refused",
        "No route to host",
        "unreachable",
        "NET/IB",
        "IBV_WC",
        "ibv_",
        "retry counter exceeded",
        "link is down",
        "Link down",
        "Broken pipe",
    ),
    rules=(
        Rule(
            pattern=r"NET/IB.*error|IBV_WC_\w+|retry counter exceeded|ibv_\w+ failed|"
            r"(?i:link (?:is )?down)",
            specificity=2,
        ),
        Rule(
            pattern=r"Connection reset by peer|Connection refused|No route to host|"
            r"Network is unreachable|Broken pipe",
            specificity=1,
        ),
    ),
    doc=__doc__ or "",
)
