"""The config check primitives every validator of `cli/` shares: the error they raise and the
field checks it words. `cli.validate` composes them; the mode-specific checks import them
from here, never from `cli.validate`, which imports those checks.
"""
from __future__ import annotations

import sde_lib


class ConfigError(ValueError):
    """A config field or command-line value that cannot work."""


def _positive_int(field: str, value, minimum: int = 1) -> None:
    try:
        sde_lib.check_int(field, value, minimum)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not allowed; expected one of {sorted(allowed)}")


def _wrapped(field: str, build):
    """Run a builder; re-raise its ValueError as a ConfigError prefixed with the section (unless
    the message already names a field of it)."""
    try:
        return build()
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if message.startswith(f"{field}."):
            raise ConfigError(message) from None
        raise ConfigError(f"{field}: {message}") from None
