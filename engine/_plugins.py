"""Building the plugin manager: built-ins by name, entry points, extra modules.

No global manager: `make_plugin_manager()` builds a fresh one each time, so two engines in one
process (tests do this) never share plugins. The built-in providers are registered by import
name exactly as a third-party plugin would be; `check_pending()` turns a misspelled hook into
an error at start-up rather than a silently ignored function.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import pluggy

from omnirelay.protocol._dialects import DialectRegistry, builtin_dialects
from omnirelay.protocol._errors import LocalProtocolError

from . import hookspecs
from ._provider import Provider

__all__ = [
    "BUILTIN_PLUGINS",
    "PluginError",
    "collect_dialects",
    "collect_providers",
    "make_plugin_manager",
]

BUILTIN_PLUGINS: tuple[str, ...] = ("omnirelay.plugins.simulator",)
ENTRY_POINT_GROUP = "omnirelay"


class PluginError(Exception):
    """A plugin cannot be loaded or declares something inconsistent."""


def make_plugin_manager(
    extra: Iterable[str | object] = (),
    *,
    builtins: Iterable[str] = BUILTIN_PLUGINS,
    entry_points: bool = True,
) -> pluggy.PluginManager:
    """A new plugin manager with the built-ins, the `omnirelay` entry points and `extra`.

    `extra` holds import names or plugin objects (a single-file build passes its plugins
    explicitly, since entry-point metadata may be absent there). Raises PluginError naming the
    module that failed to import or the hook that matches no spec.
    """
    manager = pluggy.PluginManager("omnirelay")
    manager.add_hookspecs(hookspecs)
    for plugin in (*builtins, *extra):
        if isinstance(plugin, str):
            if manager.has_plugin(plugin):
                continue
            try:
                module = importlib.import_module(plugin)
            except ImportError as exc:
                raise PluginError(f"cannot import plugin {plugin!r}: {exc}") from exc
            manager.register(module, name=plugin)
        else:
            manager.register(plugin)
    if entry_points:
        try:
            manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except (
            Exception
        ) as exc:  # a broken third-party package: say which, do not start half-loaded
            raise PluginError(
                f"loading the {ENTRY_POINT_GROUP!r} entry points failed: {exc}"
            ) from exc
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    return manager


def collect_providers(manager: pluggy.PluginManager) -> Mapping[str, Provider]:
    """Every provider the plugins declare, by name; PluginError on duplicates or junk."""
    providers: dict[str, Provider] = {}
    for declared in manager.hook.omnirelay_providers():
        for provider in declared:
            if not isinstance(provider, Provider):
                raise PluginError(f"omnirelay_providers returned {provider!r}, not a Provider")
            if provider.name in providers:
                raise PluginError(f"two plugins declare the provider {provider.name!r}")
            providers[provider.name] = provider
    return MappingProxyType(providers)


def collect_dialects(manager: pluggy.PluginManager) -> DialectRegistry:
    """The built-in dialects plus every plugin's; PluginError on a clash."""
    registry = builtin_dialects()
    for declared in manager.hook.omnirelay_dialects():
        for dialect in declared:
            try:
                registry.register(dialect)
            except LocalProtocolError as exc:
                raise PluginError(str(exc)) from exc
    return registry
