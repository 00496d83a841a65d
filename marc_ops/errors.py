"""The two kinds of error the library raises on purpose, below every other module.

A :class:`MarcError` is an expected failure: a missing or unreadable file, a profile that does not
validate, a video that does not decode, a full disk, an asset another run is materializing. Its message
names the file, field or asset and says what to do, so the ``marc`` command prints it as one line; any
other exception is a bug and gets its traceback (``marc --debug``). The typed errors of each package
(``ConfigError``, ``VideoDecodeError``, ``CheckpointNotFoundError``, ...) derive from it and keep their
builtin base (``ValueError``, ``FileNotFoundError``), so code that catches those still does.
"""

from __future__ import annotations


class MarcError(Exception):
    """An expected failure whose message says what is wrong and what to do."""


class UsageError(MarcError, ValueError):
    """A name or key a command was given that is not one it knows (a stage, profile, benchmark, method or
    partition key); the message lists the known ones."""
