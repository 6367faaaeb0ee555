"""Settings objects: frozen dataclasses built from keyword arguments or a TOML file, validated the same way.

A TOML file may be flat or grouped in sections (section names only group keys; every key is unique). Every value
is checked against its field's type before any work starts, so ``size = "32"`` is a one-line error naming the
key, the value and the type expected.
"""

from __future__ import annotations

import math
import numbers
import sys
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Settings", "SettingsError", "check_int", "check_choice"]

S = TypeVar("S", bound="Settings")

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "nothing"}


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names it."""


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:  # NumPy integers too; never True/False
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if hint is float:  # any real number but NaN
        return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                and not math.isnan(value))
    if hint is type(None):
        return value is None
    return isinstance(value, origin or hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    if origin is typing.Literal:
        values = typing.get_args(hint)
        return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(repr(v) for v in values)
    return _TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _flatten(table: dict[str, Any], out: dict[str, Any], source: str, prefix: str = "") -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            _flatten(value, out, source, f"{prefix}{key}.")
        elif key in out:
            raise SettingsError(f"Setting {key!r} is given twice in {source} (last in section {prefix!r}).")
        else:
            out[key] = value


def check_int(settings: Any, name: str, minimum: int) -> None:
    """``name`` must be an integer >= ``minimum``."""
    value = getattr(settings, name)
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or value < minimum:
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def check_choice(settings: Any, name: str, choices: tuple[str, ...]) -> None:
    """``name`` must be one of ``choices``."""
    value = getattr(settings, name)
    if value not in choices:
        raise SettingsError(f"{name} must be one of {list(choices)}, got {value!r}.")


class Settings:
    """Mixin for frozen dataclasses of settings: type-checked fields, ``from_mapping``, ``from_toml``,
    ``replace`` and ``as_dict``. Subclasses call ``self.check_types()`` first in ``__post_init__``."""

    _label = "setting"

    def check_types(self) -> None:
        """Every field's value has the field's declared type (an int where a float is expected is fine)."""
        hints = typing.get_type_hints(type(self))
        for field in fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if not _matches(value, hints[field.name]):
                shown = f"the string {value!r}" if isinstance(value, str) else repr(value)
                raise SettingsError(f"{self._label} {field.name} = {shown}: expected {_describe(hints[field.name])}.")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls: type[S], values: dict[str, Any], source: str = "keyword arguments") -> S:
        """Build from a flat mapping; an unknown key is an error naming it and the valid ones."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise SettingsError(f"Unknown {cls._label}(s) {unknown} in {source}; valid settings: {cls.names()}.")
        try:
            return cls(**values)
        except SettingsError as error:
            raise SettingsError(f"{error} (in {source})") from None

    @staticmethod
    def toml_values(path: str | Path) -> dict[str, Any]:
        """The settings a TOML file gives (flat or in sections), as they are written, not yet validated."""
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise SettingsError(f"Cannot read settings from {str(path)!r}: {error}") from error
        flat: dict[str, Any] = {}
        _flatten(document, flat, str(path))
        return flat

    @classmethod
    def from_toml(cls: type[S], path: str | Path, **overrides: Any) -> S:
        """Read a TOML file (flat or in sections), then apply ``overrides``."""
        return cls.from_mapping({**cls.toml_values(path), **overrides}, source=str(path))

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes``, validated like a new object."""
        return self.from_mapping({**asdict(self), **changes})  # type: ignore[call-overload]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]
