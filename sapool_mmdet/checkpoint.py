"""One reader for checkpoints: every tool that loads weights reads them
here, so a missing, truncated or foreign checkpoint is refused the same
way everywhere, naming the file and what is wrong with it.

- :func:`read_checkpoint` loads an mmengine checkpoint the safe way
  (``weights_only=True``; :mod:`sapool_mmdet.compat` allow-lists the types
  mmengine stores) and turns a missing, empty or truncated file into a
  :class:`CheckpointError`.
- :func:`check_weights_fit` compares a state dict with a model: keys
  missing on either side and tensors of another shape are refused unless
  partial loading was asked for.
- :func:`load_weights` does both and loads the weights through mmengine.
- :func:`training_state_problem` says why a checkpoint cannot resume
  training (no ``message_hub`` or no epoch / iteration in ``meta``).
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    'ALLOW_PARTIAL_KEY', 'CheckpointError', 'WeightsMismatch',
    'check_weights_fit', 'checkpoint_state_dict', 'load_weights',
    'read_checkpoint', 'training_state_problem', 'weights_mismatch'
]

# The config key (and, in tools/train.py and tools/test.py, the flag
# --allow-partial) that accepts a checkpoint whose weights do not all fit.
ALLOW_PARTIAL_KEY = 'allow_partial_checkpoint'
# Only the runner honours partial loading: export, compaction and the
# pooling visualiser need every weight of the model they are given.
PARTIAL_HINT = (f'to train or test with only the tensors that fit, pass '
                f'--allow-partial to tools/train.py or tools/test.py, or '
                f'set {ALLOW_PARTIAL_KEY} = True in the config')
SHOWN = 3  # names listed per kind of mismatch
DEFAULT_REVISE_KEYS = ((r'^module\.', ''), )


class CheckpointError(ValueError):
    """A checkpoint cannot be used as asked; the message names the file
    and the cause."""


def read_checkpoint(filename: str,
                    map_location: Union[str, torch.device] = 'cpu',
                    mmap: bool = False) -> dict:
    """Load a local checkpoint with ``torch.load(weights_only=True)``.

    Args:
        filename (str): The ``.pth`` file.
        map_location (str | torch.device): Where tensors go. Defaults to
            'cpu'.
        mmap (bool): Map the tensor data instead of reading it (cheap; the
            tensors are read when used). Defaults to False.

    Returns:
        dict: What the file holds (for an mmengine checkpoint ``meta``,
        ``state_dict``, ``message_hub``, ``optimizer`` ...).

    Raises:
        CheckpointError: The file is missing, empty, truncated or not a
            torch checkpoint, or holds types ``weights_only`` refuses.
    """
    if not os.path.isfile(filename):
        raise CheckpointError(f'checkpoint {filename!r} not found')
    size = os.path.getsize(filename)
    if size == 0:
        raise CheckpointError(
            f'checkpoint {filename!r} is empty (0 bytes): its write was '
            f'interrupted')
    try:
        checkpoint = torch.load(
            filename, map_location=map_location, weights_only=True,
            mmap=mmap)
    except Exception as error:  # torch raises many types for bad files
        cause = str(error).strip().splitlines()[0] if str(error) else \
            type(error).__name__
        raise CheckpointError(
            f'checkpoint {filename!r} ({size / 2**20:.1f} MiB) cannot be '
            f'read, it is truncated or not a torch checkpoint: {cause}'
        ) from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'checkpoint {filename!r} holds a {type(checkpoint).__name__}, '
            f'not a dict of weights')
    return checkpoint


def training_state_problem(checkpoint: dict) -> Optional[str]:
    """Why ``checkpoint`` cannot resume training, or None when it can.

    mmengine's ``Runner.resume`` needs ``meta['epoch']``, ``meta['iter']``
    and ``message_hub``; ``optimizer`` and ``param_schedulers`` are
    restored when present.
    """
    missing = []
    meta = checkpoint.get('meta')
    if not isinstance(meta, dict) or 'epoch' not in meta \
            or 'iter' not in meta:
        missing.append("meta['epoch'] / meta['iter']")
    if 'message_hub' not in checkpoint:
        missing.append('message_hub')
    if 'state_dict' not in checkpoint:
        missing.append('state_dict')
    if not missing:
        return None
    return (f'it holds no training state ({", ".join(missing)} missing; '
            f'keys: {sorted(checkpoint)[:6]}): it is a weights-only '
            f'checkpoint. To start a new training from its weights, use '
            f'--cfg-options load_from=CHECKPOINT without --resume')


def checkpoint_state_dict(
        checkpoint: dict,
        revise_keys: Iterable[Tuple[str, str]] = DEFAULT_REVISE_KEYS
) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint as mmengine loads them: its
    ``state_dict`` entry (the checkpoint itself when it has none) with
    ``revise_keys`` applied (by default the ``module.`` prefix of a DDP
    model removed)."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    for pattern, replacement in revise_keys:
        state_dict = {
            re.sub(pattern, replacement, key): value
            for key, value in state_dict.items()
        }
    return state_dict


@dataclass
class WeightsMismatch:
    """How a state dict differs from a model's (names in model order)."""
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    # name -> (shape in the checkpoint, shape in the model)
    shapes: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)

    def describe(self) -> str:
        """A one-paragraph summary: counts and the first names of each
        kind."""

        def first(names: Sequence[str]) -> str:
            more = f', ... {len(names) - SHOWN} more' \
                if len(names) > SHOWN else ''
            return ', '.join(names[:SHOWN]) + more

        parts = []
        if self.shapes:
            shown = [
                f'{name} {tuple(ckpt)} in the checkpoint vs {tuple(model)} '
                f'in the model' for name, (ckpt, model) in
                list(self.shapes.items())[:SHOWN]
            ]
            more = f', ... {len(self.shapes) - SHOWN} more' \
                if len(self.shapes) > SHOWN else ''
            parts.append(f'{len(self.shapes)} of another shape '
                         f'({", ".join(shown)}{more})')
        if self.missing:
            parts.append(f'{len(self.missing)} missing from the checkpoint '
                         f'({first(self.missing)})')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} not in the model '
                         f'({first(self.unexpected)})')
        return 'tensors ' + '; '.join(parts)


def weights_mismatch(model: nn.Module,
                     state_dict: Dict[str, torch.Tensor]) -> WeightsMismatch:
    """Compare ``state_dict`` with ``model.state_dict()`` by name and
    shape (parameters and buffers)."""
    own = model.state_dict()
    mismatch = WeightsMismatch()
    for name, tensor in own.items():
        if name not in state_dict:
            mismatch.missing.append(name)
            continue
        theirs = state_dict[name]
        if hasattr(theirs, 'shape') and tuple(theirs.shape) != tuple(
                tensor.shape):
            mismatch.shapes[name] = (tuple(theirs.shape), tuple(tensor.shape))
    mismatch.unexpected = [name for name in state_dict if name not in own]
    return mismatch


def check_weights_fit(model: nn.Module,
                      state_dict: Dict[str, torch.Tensor],
                      source: str,
                      allow_partial: bool = False) -> WeightsMismatch:
    """Refuse weights that do not fit ``model``.

    Args:
        model (nn.Module): The model about to receive the weights.
        state_dict (dict[str, Tensor]): The weights (see
            :func:`checkpoint_state_dict`).
        source (str): Where they come from, for the message.
        allow_partial (bool): Return the mismatch instead of raising, for
            a caller that loads the tensors that fit. Defaults to False.

    Returns:
        WeightsMismatch: Empty when every tensor fits.

    Raises:
        CheckpointError: Names missing, unexpected or differently shaped
            tensors (how many of each and the first few) unless
            ``allow_partial``.
    """
    mismatch = weights_mismatch(model, state_dict)
    if mismatch and not allow_partial:
        raise CheckpointError(
            f'checkpoint {source!r} does not fit the model '
            f'({type(model).__name__}, {len(model.state_dict())} tensors): '
            f'{mismatch.describe()}. It was probably trained with another '
            f'config; {PARTIAL_HINT}')
    return mismatch


def load_weights(model: nn.Module,
                 filename: str,
                 allow_partial: bool = False,
                 map_location: Union[str, torch.device] = 'cpu') -> dict:
    """Load the weights of checkpoint ``filename`` into ``model``,
    refusing a checkpoint that does not fit (see :func:`check_weights_fit`).

    With ``allow_partial`` the tensors that fit are loaded and the rest are
    reported by mmengine's loader, as ``load_checkpoint(strict=False)``
    does.

    Returns:
        dict: The checkpoint.

    Raises:
        CheckpointError: See :func:`read_checkpoint` and
            :func:`check_weights_fit`.
    """
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    checkpoint = read_checkpoint(filename, map_location=map_location)
    check_weights_fit(model, checkpoint_state_dict(checkpoint), filename,
                      allow_partial)
    _load_checkpoint_to_model(model, checkpoint, strict=False)
    return checkpoint
