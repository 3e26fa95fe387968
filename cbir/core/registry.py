"""Named factories, registered with a decorator (timm-style) and built by name.

One ``Registry`` per family (poolings, detectors, face encoders, losses, miners)::

    POOLINGS = Registry("pooling")

    @POOLINGS.register("gem")
    def make_gem(p: float = 3.0) -> nn.Module: ...

    POOLINGS.create("gem", p=4.0)

Unknown names raise a ``ValueError`` (or the family's own subclass of it) that lists the
known ones, so a command-line typo gets a sentence the user can act on. ``build`` passes a
member only the settings its factory names, for families whose members share one
configuration (an ``EncoderSpec`` carries the settings of every pooling).
"""

from __future__ import annotations

import inspect
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")
Factory = TypeVar("Factory", bound=Callable)


class Registry(Generic[T]):
    """A family of named factories that build ``T``; names keep their registration order."""

    def __init__(self, family: str, error: type[ValueError] = ValueError):
        self.family = family
        self.error = error
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Factory], Factory]:
        """Decorator: make ``name`` build with the decorated factory (class or function)."""

        def decorate(factory: Factory) -> Factory:
            if name in self._factories:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``."""
        try:
            return self._factories[name]
        except KeyError:
            raise self.error(f"unknown {self.family} {name!r}: choose one of {', '.join(self._factories)}") from None

    def create(self, name: str, /, **kwargs) -> T:
        """Build the ``name`` member with ``kwargs``."""
        return self.get(name)(**kwargs)

    def build(self, name: str, /, **settings) -> T:
        """Build ``name`` with those ``settings`` its factory takes; a ``None`` setting leaves the factory's default."""
        factory = self.get(name)
        accepted = inspect.signature(factory).parameters
        return factory(**{key: value for key, value in settings.items() if key in accepted and value is not None})

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        return tuple(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}: {', '.join(self._factories)})"
