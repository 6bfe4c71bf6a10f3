from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from omnirelay.engine import Provider, SessionContext, hookimpl, hookspecs
from omnirelay.engine._plugins import (
    PluginError,
    collect_dialects,
    collect_providers,
    make_plugin_manager,
)
from omnirelay.protocol import Dialect, Rendition

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hook_names() -> list[str]:
    return [
        name
        for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("omnirelay_")
    ]


def test_every_hook_is_documented() -> None:
    names = hook_names()
    assert names, "no hookspecs found"
    text = DOCS.read_text(encoding="utf-8")
    for name in names:
        assert re.search(rf"(^#+ .*`?{name}`?|`{name}`)", text, re.MULTILINE), (
            f"{name} is not in docs/plugins.md"
        )
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"


async def _run(context: SessionContext) -> None:
    pass


class TwoProviders:
    @hookimpl
    def omnirelay_providers(self) -> list[Provider]:
        return [Provider(name="one", run=_run), Provider(name="two", run=_run)]


class Clash:
    @hookimpl
    def omnirelay_providers(self) -> list[Provider]:
        return [Provider(name="simulator", run=_run)]


class Misspelled:
    @hookimpl
    def omnirelay_provider(self) -> list[Provider]:  # no such hook
        return []


class ExtraDialect:
    @hookimpl
    def omnirelay_dialects(self) -> list[Dialect]:
        def render(event: object, context: object) -> tuple[Rendition, ...]:
            return ()

        return [Dialect(name="mine", wire="socketio", events=frozenset(), render=render)]


def test_builtins_and_extra_plugins_are_collected_per_manager() -> None:
    providers = collect_providers(make_plugin_manager([TwoProviders()], entry_points=False))
    assert {"simulator", "one", "two"} <= set(providers)
    # A second manager is independent: no global state.
    assert "one" not in collect_providers(make_plugin_manager(entry_points=False))


def test_plugin_mistakes_fail_at_start_with_a_clear_error() -> None:
    with pytest.raises(PluginError, match="two plugins declare the provider 'simulator'"):
        collect_providers(make_plugin_manager([Clash()], entry_points=False))
    with pytest.raises(PluginError, match="omnirelay_provider"):
        make_plugin_manager([Misspelled()], entry_points=False)
    with pytest.raises(PluginError, match=r"cannot import plugin 'no\.such\.module'"):
        make_plugin_manager(["no.such.module"], entry_points=False)


def test_plugin_dialects_join_the_builtins() -> None:
    registry = collect_dialects(make_plugin_manager([ExtraDialect()], entry_points=False))
    assert {"whatsapp-web", "crm", "chat-sync", "evolution", "envelope", "mine"} <= set(
        registry.names()
    )
    with pytest.raises(PluginError):
        collect_dialects(make_plugin_manager([ExtraDialect(), ExtraDialect()], entry_points=False))
