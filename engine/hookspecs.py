"""The hooks an omnirelay plugin may implement.

A plugin is any object or module with functions decorated by `omnirelay.engine.hookimpl` and
named like the specs below. Built-in providers are plugins too (see `omnirelay.plugins`), and
third parties ship theirs through the `omnirelay` entry-point group::

    [project.entry-points.omnirelay]
    myprovider = "myprovider.plugin"

Hooks are called with keyword arguments only. A misspelled hook name fails at start-up
(`PluginManager.check_pending`). Every hook is documented in docs/plugins.md; a test fails when
one is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from omnirelay.protocol._dialect_base import Dialect

    from ._provider import Provider

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("omnirelay")
hookimpl = pluggy.HookimplMarker("omnirelay")


@hookspec
def omnirelay_providers() -> list[Provider]:  # type: ignore[empty-body]
    """Declare the provider kinds this plugin offers.

    Called once when the engine starts. Each `Provider` names a kind (`"simulator"`,
    `"evolution"`, …) and gives the coroutine that runs one session of it. Two plugins declaring
    the same name is an error at start-up.

    :return: the providers, possibly empty.
    """


@hookspec
def omnirelay_dialects() -> list[Dialect]:  # type: ignore[empty-body]
    """Declare extra client dialects (event formats) namespaces and endpoints may use.

    Called once when the engine starts; the five built-in dialects are always there. A name
    clashing with a registered dialect is an error at start-up.

    :return: the dialects, possibly empty.
    """
