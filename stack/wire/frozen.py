"""A faster __init__ for the wire layer's frozen, slotted dataclasses. Stdlib only.

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
