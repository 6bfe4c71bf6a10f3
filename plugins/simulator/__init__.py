"""The simulator provider: a believable company on one WhatsApp number, no network needed.

This is the worked example of a provider plugin (docs/plugins.md walks through it). A plugin
is a module with `@hookimpl` functions; this one implements `omnirelay_providers` and returns
one `Provider` record. The engine runs `run(context)` once per configured session, restarts it
with backoff when it raises, and cancels it when the session stops. It uses only the public
API of `omnirelay.engine` and `omnirelay.protocol`, exactly as a third-party plugin would.

    [[sessions]]
    id = "demo-1"
    tenant = "acme"
    provider = "simulator"
    options = { rate = 2.0, seed = 7 }

Options and events: docs/providers/simulator.md.
"""

from __future__ import annotations

from omnirelay.engine import Provider, hookimpl

from ._company import Company, CompanyStatistics, run
from ._options import SimulatorOptions, validate_options
from ._webhook import webhook

__all__ = [
    "PROVIDER",
    "Company",
    "CompanyStatistics",
    "SimulatorOptions",
    "omnirelay_providers",
    "run",
    "validate_options",
    "webhook",
]

PROVIDER = Provider(
    name="simulator",
    run=run,
    description="A simulated company on one WhatsApp number: chats, groups, statuses, noise.",
    validate_options=validate_options,
    webhook=webhook,
)


@hookimpl
def omnirelay_providers() -> list[Provider]:
    """Declare the `simulator` provider."""
    return [PROVIDER]
