"""fast_init: the same construction as the dataclass __init__, still frozen."""

from __future__ import annotations

import dataclasses

import pytest

from stack.tcp.sender import EctSegment
from stack.wire import Ipv4Header, TcpSegment
from stack.wire.frozen import fast_init


@pytest.mark.parametrize("cls", [TcpSegment, EctSegment, Ipv4Header])
def test_fast_init_keeps_the_dataclass_signature_defaults_and_frozenness(cls: type) -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Reference(cls):
        pass  # the dataclass-generated __init__ of the same fields

    assert vars(Reference)["__init__"] is not vars(cls)["__init__"]
    fields = dataclasses.fields(cls)
    required = [f for f in fields if f.default is dataclasses.MISSING]
    args = list(range(1, len(required) + 1))
    fast, slow = cls(*args), Reference(*args)
    for f in fields:
        assert getattr(fast, f.name) == getattr(slow, f.name), f.name
    everything = {f.name: i for i, f in enumerate(fields)}
    fast, slow = cls(**everything), Reference(**everything)
    assert [getattr(fast, f.name) for f in fields] == list(everything.values())
    assert [getattr(slow, f.name) for f in fields] == list(everything.values())
    assert fast == cls(**everything) and hash(fast) == hash(cls(**everything))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.__setattr__(fields[0].name, 99)
    with pytest.raises(TypeError):
        cls()  # the required fields are still required


def test_fast_init_refuses_what_it_cannot_copy() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        items: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError):
        fast_init(Factory)
