"""The simulator's session options: what each one means, its default, and how it is checked.

`validate_options` is the provider's `validate_options` hook: the engine calls it before a
session's options are stored, so a typo or a negative rate is refused with a sentence naming
the option instead of crashing the session later. `SimulatorOptions.from_mapping` is what the
session coroutine itself uses; both raise ValueError for the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import attrs

__all__ = ["MAX_CONTACTS", "SimulatorOptions", "validate_options"]

MAX_CONTACTS = 200

# Checks one option's value; returns it normalised or raises ValueError naming the option.
_Check: TypeAlias = Callable[[str, object], Any]


@attrs.frozen(kw_only=True)
class SimulatorOptions:
    """One simulated session's settings (docs/providers/simulator.md has the table).

    `rate` is events per second on average; `duration` (seconds), `max_events` and
    `fail_after` end the session, the last one by raising RuntimeError.
    """

    rate: float = 1.0
    seed: int | None = None
    qr_rounds: int = 2
    contacts: int = 8
    duration: float | None = None
    max_events: int | None = None
    fail_after: int | None = None
    benchmark: bool = False
    webhook_secret: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SimulatorOptions:
        """Check `options` (JSON/TOML values); ValueError naming the first bad option."""
        unknown = sorted(set(options) - _FIELD_NAMES)
        if unknown:
            known = ", ".join(sorted(_FIELD_NAMES))
            raise ValueError(f"unknown simulator option {unknown[0]!r} (known: {known})")
        values: dict[str, Any] = {}
        for name, value in options.items():
            if value is None and name in _OPTIONAL:
                continue
            values[name] = _CHECKS[name](name, value)
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        """The options as JSON-able values, leaving out those that are unset (None)."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


def validate_options(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `Provider.validate_options` hook: the given options, checked and normalised.

    Only the options given are returned (an int `rate` becomes a float, a None optional is
    dropped), so defaults stay the simulator's, not frozen into stored sessions.
    """
    parsed = SimulatorOptions.from_mapping(options).to_mapping()
    return {name: parsed[name] for name in options if name in parsed}


def _number_above_zero(name: str, value: object) -> float:
    # bool is an int subclass in Python: `rate = true` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"simulator option {name!r} must be a number, not {value!r}")
    if value <= 0:
        raise ValueError(f"simulator option {name!r} must be greater than 0, not {value!r}")
    return float(value)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"simulator option {name!r} must be an integer, not {value!r}")
    return value


def _integer_in(low: int, high: int | None) -> _Check:
    def check(name: str, value: object) -> int:
        number = _integer(name, value)
        if number < low or (high is not None and number > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"simulator option {name!r} must be {bounds}, not {number}")
        return number

    return check


def _secret(name: str, value: object) -> str:
    if not isinstance(value, str) or len(value) < 16:
        raise ValueError(f"simulator option {name!r} must be a string of at least 16 characters")
    return value


def _boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"simulator option {name!r} must be true or false, not {value!r}")
    return value


_CHECKS: Mapping[str, _Check] = {
    "rate": _number_above_zero,
    "seed": _integer,
    "qr_rounds": _integer_in(0, None),
    "contacts": _integer_in(1, MAX_CONTACTS),
    "duration": _number_above_zero,
    "max_events": _integer_in(1, None),
    "fail_after": _integer_in(0, None),
    "benchmark": _boolean,
    "webhook_secret": _secret,
}
_FIELD_NAMES = frozenset(attrs.fields_dict(SimulatorOptions))
_OPTIONAL = frozenset({"seed", "duration", "max_events", "fail_after", "webhook_secret"})
assert frozenset(_CHECKS) == _FIELD_NAMES
