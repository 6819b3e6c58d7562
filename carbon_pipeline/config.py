"""Reading configuration from the environment: a malformed value stops with one line naming
the variable and what was expected, never a traceback from deep inside."""

from __future__ import annotations

import json
import math
import os


class ConfigError(ValueError):
    """An environment variable holds a value that cannot be used."""


def env(name: str, default: str | None = None) -> str | None:
    """The variable's value; unset or empty gives the default."""
    value = os.getenv(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a whole number") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name}={value!r}: expected a whole number of at least {minimum}")
    return number


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    value = env(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a number") from None
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        bound = f" of at least {minimum:g}" if minimum is not None else ""
        raise ConfigError(f"{name}={value!r}: expected a finite number{bound}")
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env(name) or default).strip()
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def env_string_map(name: str) -> dict[str, str]:
    """A JSON object of strings, e.g. {"job": "node"}."""
    value = env(name)
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f'{name}: not JSON ({exc.msg}); expected an object like {{"job": "node"}}'
        ) from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ConfigError(
            f'{name}={value!r}: expected a JSON object of strings, like {{"job": "node"}}'
        )
    return parsed


def env_list(name: str, default: list[str]) -> list[str]:
    """Comma-separated values."""
    value = env(name)
    return [v.strip() for v in value.split(",") if v.strip()] if value else list(default)
