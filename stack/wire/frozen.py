"""Frozen value classes without the decorator's costs. Stdlib only.

`Frozen` is a base that writes out what `@dataclass(frozen=True, slots=True)`
generates (eq, hash and repr over the fields in `__match_args__`, FrozenInstanceError
on assignment): the decorator costs about 0.4 ms of start-up per class, and every
pytcp command imports the TCP events and the TUN module's records built on it.

For the wire layer's frozen, slotted dataclasses, a faster __init__:

The __init__ `dataclasses` writes for a frozen class sets each field through
`object.__setattr__(self, name, value)`: about 0.3 µs a field, 4-5 µs for a
TcpSegment, built or parsed several times for every packet a bulk transfer moves.
`fast_init(cls)` gives the class an __init__ of the same signature and defaults that
calls each slot's member descriptor directly (its `__set__`): the same stores, half
the time. The class stays frozen (assignment still raises FrozenInstanceError); eq,
hash and repr are the dataclass's. Only for fields with plain defaults (no
default_factory, no __post_init__, no InitVar): `fast_init` refuses anything else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


class Frozen:
    """The generated methods, over the fields in `__match_args__` (their order). A
    subclass declares `__slots__` and `__match_args__` and sets its fields in __init__
    with `object.__setattr__`."""

    __slots__: tuple[str, ...] = ()
    __match_args__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def fast_init(cls: type[T]) -> type[T]:
    """Replace the dataclass `cls`'s __init__ (see the module docstring); returns cls."""
    params = dataclasses.fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or any(
        f.default_factory is not dataclasses.MISSING or not f.init for f in params
    ):
        raise TypeError(f"fast_init: {cls.__name__} needs the dataclass __init__")
    namespace: dict[str, Any] = {}
    args, body = [], []
    for i, f in enumerate(params):
        # The slot's member descriptor, in the class or the base that declared it.
        slot = next(k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__)
        namespace[f"_set{i}"] = slot.__set__
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            namespace[f"_default{i}"] = f.default
            args.append(f"{f.name}=_default{i}")
        body.append(f"    _set{i}(self, {f.name})")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # the source is built from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
