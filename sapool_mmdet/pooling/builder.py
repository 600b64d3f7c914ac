"""The pooling registry and its factory.

Every pooling method is a module registered in :data:`POOLING` whose
constructor takes ``in_channels`` and ``stride`` first. Built through
:func:`build_pooling`, it maps (N, C, H, W) to (N, C, ceil(H/s), ceil(W/s))
for any H, W >= 1: the same shape as the 3x3 stride-s convolution it replaces.
"""
import inspect
from typing import Optional

import torch.nn as nn
from mmengine.registry import Registry

__all__ = ['POOLING', 'build_pooling', 'check_positive_int', 'check_choice',
           'with_defaults']

POOLING = Registry('pooling', scope='sapool_mmdet',
                   locations=['sapool_mmdet.pooling'])


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f'{name} must be an integer >= {minimum}, got {value!r}')
    return value


def check_choice(name: str, value, choices) -> object:
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if value not in choices:
        raise ValueError(
            f'{name} must be one of {list(choices)}, got {value!r}')
    return value


def _constructor_arguments(cls: type) -> list:
    """Named constructor arguments, following ``**kwargs`` to the parents
    (a variant that adds a branch passes its parent's arguments on)."""
    names = []
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names += [p.name for p in params
                  if p.name not in ('self', 'in_channels', 'stride', *names)
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _pooling_class(cfg) -> type:
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(
            f'a pooling config must be a dict with a "type" key, one of '
            f'{sorted(POOLING.module_dict)}; got {cfg!r}')
    pool_type = cfg['type']
    cls = POOLING.get(pool_type) if isinstance(pool_type, str) else pool_type
    if not inspect.isclass(cls):
        raise ValueError(
            f'unknown pooling type {pool_type!r}; registered types are '
            f'{sorted(POOLING.module_dict)}')
    return cls


def with_defaults(cfg: dict, **defaults) -> dict:
    """Return a copy of the pooling ``cfg`` with each of ``defaults`` that
    its type accepts and ``cfg`` does not set.

    Backbones use it to hand their ``norm_cfg`` (e.g. SyncBN) to the pooling
    layers they build, while a ``norm_cfg`` in the pooling dict still wins
    and methods without norms (max, average) are left alone.
    """
    accepted = _constructor_arguments(_pooling_class(cfg))
    out = dict(cfg)
    for name, value in defaults.items():
        if name in accepted and name not in out:
            out[name] = value
    return out


def build_pooling(cfg: Optional[dict], in_channels: int,
                  stride: int) -> nn.Module:
    """Build a registered pooling module.

    Args:
        cfg (dict): ``dict(type='NLPool', **arguments)``; ``type`` names a
            registered pooling method.
        in_channels (int): Channels of the input (and of the output).
        stride (int): Down-sampling factor s >= 1 (window = stride = s).

    Returns:
        nn.Module: maps (N, C, H, W) to (N, C, ceil(H/s), ceil(W/s)).

    Raises:
        ValueError: on an unknown type, an unknown argument or a bad value;
            the message names what is valid.
    """
    cls = _pooling_class(cfg)
    check_positive_int('in_channels', in_channels)
    check_positive_int('stride', stride)
    args = dict(cfg)
    args.pop('type')
    valid = _constructor_arguments(cls)
    unknown = sorted(set(args) - set(valid))
    if unknown:
        raise ValueError(
            f'{cls.__name__} got unknown argument(s) {unknown}; valid '
            f'arguments are {valid}')
    return cls(in_channels=in_channels, stride=stride, **args)
