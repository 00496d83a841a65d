"""Environment variables in profile paths (``${VAR}``, ``${VAR:-default}``) and the error a bad profile raises."""

from __future__ import annotations

import os
import re

from marc_ops.errors import MarcError

_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (shell style) and a leading ``~``."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(
                f"environment variable {name} is not set (used as ${{{name}}}); set it or give a default"
            )
        return default

    return os.path.expanduser(_ENV_PATTERN.sub(substitute, value))


class ConfigError(MarcError, ValueError):
    """A profile or params file that does not validate; the message says what to change."""
