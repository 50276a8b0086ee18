"""The registry of job kinds: name → :class:`~replicator.flow.Kind`.

Flow modules register their kinds when they are imported; the built-in ones
are imported by :mod:`replicator.flows` (the command line and the service
import that package).  The engine looks kinds up here and imports no flow.
"""

from __future__ import annotations

from replicator.config import Config
from replicator.errors import ConfigError, UsageError
from replicator.flow import Kind
from replicator.job import JobRequest

_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add ``kind``; registering the same name twice is a bug."""
    known = _KINDS.get(kind.name)
    if known is not None and known is not kind:
        raise ValueError(f"job kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def get(name: str) -> Kind:
    """The kind called ``name``; a usage error naming the known kinds otherwise."""
    try:
        return _KINDS[name]
    except KeyError:
        raise UsageError(
            f"no job kind {name!r} (known: {', '.join(names()) or 'none registered'})"
        ) from None


def names() -> tuple[str, ...]:
    """Every registered kind's name, sorted."""
    return tuple(sorted(_KINDS))


def registered() -> tuple[Kind, ...]:
    return tuple(_KINDS[name] for name in names())


def configured(config: Config, name: str) -> JobRequest:
    """What ``[jobs.<name>]`` asks for, checked against its kind.

    Raises a :class:`~replicator.errors.ConfigError` naming the key.
    """
    request = config.request(name)
    key = f"jobs.{name}"
    kind = _KINDS.get(request.kind)
    if kind is None:
        raise ConfigError(config.source, f"{key}.kind", f"one of {', '.join(names())}")
    try:
        kind.check(request)
    except UsageError as exc:
        raise ConfigError(config.source, key, f"a runnable job ({exc})") from None
    return request
