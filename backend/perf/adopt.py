"""Module rewrites that keep the source's parameters: the optimized layer IS the loaded layer
(same Parameter objects, same state_dict keys), only its class and derived buffers differ."""

from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def adopt(cls: type[M], source: nn.Module) -> M:
    """An instance of `cls` (a subclass of source's class) sharing source's parameters,
    sub-modules and settings; buffers are copied by reference."""
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    new.__dict__.update({k: v for k, v in source.__dict__.items()
                         if k not in ("_parameters", "_buffers", "_modules")})
    new._parameters = source._parameters
    new._buffers = dict(source._buffers)
    new._non_persistent_buffers_set = set(source._non_persistent_buffers_set)
    new._modules = source._modules
    return new
