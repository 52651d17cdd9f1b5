"""The registry of strategy kinds: one place that knows every kind by name.

Kinds register themselves from `strategies.library.kinds`; the registry imports that
module lazily so `kind_choices` can feed a model field without import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from strategies.library.base import StrategyKind

K = TypeVar("K", bound="type[StrategyKind]")

_REGISTRY: dict[str, StrategyKind] = {}


class UnknownStrategyKind(KeyError):
    def __str__(self) -> str:
        return (
            f"unknown strategy kind {self.args[0]!r}; known kinds: {', '.join(sorted(_REGISTRY))}"
        )


def register(cls: K) -> K:
    """Class decorator: instantiate the kind and make it known by its `name`."""
    instance = cls()
    if instance.name in _REGISTRY:
        raise ValueError(f"strategy kind {instance.name!r} registered twice")
    _REGISTRY[instance.name] = instance
    return cls


def _load() -> None:
    import strategies.library.kinds  # noqa: F401  (registers the built-in kinds)


def get_kind(name: str) -> StrategyKind:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownStrategyKind(name) from None


def all_kinds() -> list[StrategyKind]:
    _load()
    return list(_REGISTRY.values())


def kind_choices() -> list[tuple[str, str]]:
    """Choices for `Strategy.kind`; a callable so migrations do not freeze the list."""
    return [(kind.name, kind.label) for kind in all_kinds()]
