"""Immutable, slotted values without :mod:`dataclasses`.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``) and compiles
each class's methods with ``exec``: ~6 ms of `agentsess run`'s start-up for four classes.
The values on that path (a run's request and plan, a nested run's caller, containment's
availability) derive from :class:`Frozen` instead: each lists its fields in ``__slots__``,
sets them in its own ``__init__`` (so a half-built value cannot be made: a missing argument
is a ``TypeError``) and is immutable afterwards, compared and shown field by field, as a
``@dataclass(frozen=True, slots=True)`` would be.
"""


class Frozen:
    """Base of an immutable value whose fields are its ``__slots__`` (set with :meth:`_set`)."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **fields) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name}")

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._fields()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"

    def replace(self, **changes):
        """A copy with ``changes`` (as :func:`dataclasses.replace` makes one)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        fields.update(changes)
        return type(self)(**fields)
