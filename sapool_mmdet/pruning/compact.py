"""Remove the channels a ``ChannelPruningHook`` pruned, physically.

The pruned network computes with exact zeros; the compact one leaves them
out: narrower convs and norms, narrower depthwise convs, pooling layers and
residual streams, and narrower input slices of the convs that read them.
The new widths go into the config (the backbones' ``pruned_channels``), so
mmdet's tools build and load the compact model like any other.
"""
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config

from ..analysis.config import infer_input_size, load_config
from ..analysis.memory import iter_tensors, trace_activations
from ..checkpoint import (check_weights_fit, checkpoint_state_dict,
                          read_checkpoint)
from ..fileio import atomic_open
from .groups import narrow_groups_, select_groups
from .pruner import ChannelPruner, allocate

__all__ = ['CompactResult', 'StageMemory', 'compact_pruned',
           'compact_model_', 'planned_widths', 'write_compact_config',
           'pruning_memory', 'memory_table', 'PRUNING_HOOKS']

#: Hook types removed from a compact config: its channels are already gone.
PRUNING_HOOKS = ('ChannelPruningHook', 'sapool_mmdet.ChannelPruningHook')


@dataclass
class CompactResult:
    """What :func:`compact_pruned` wrote and measured.

    Attributes:
        config (str): The compact config file.
        checkpoint (str): The compact checkpoint ('' if none was written).
        channels (dict): Map name -> (channels before, channels after).
        params (tuple[int, int]): Parameters before and after.
        max_abs_diff (float): Largest difference between the pruned and the
            compact detector's raw outputs (NaN if not compared).
    """
    config: str
    checkpoint: str
    channels: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    params: Tuple[int, int] = (0, 0)
    max_abs_diff: float = float('nan')
    memory: List['StageMemory'] = field(default_factory=list)

    def table(self) -> str:
        """The per-map channel counts and parameters as a plain table."""
        rows = [('map', 'before', 'after')]
        rows += [(name, str(a), str(b))
                 for name, (a, b) in self.channels.items()]
        rows.append(('params', str(self.params[0]), str(self.params[1])))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f'{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}'
                 for a, b, c in rows]
        lines.insert(1, '-' * len(lines[0]))
        return '\n'.join(lines) + '\n'


def compact_model_(model: nn.Module, pruned: Dict[str, Sequence[int]]
                   ) -> Dict[str, int]:
    """Narrow a detector's backbone in place, removing the channels
    ``pruned[name]`` of each map; returns the new widths by map name.

    Raises:
        ValueError: for a map the backbone does not have or cannot narrow.
    """
    backbone = model.backbone
    groups = select_groups(backbone.channel_groups(), list(pruned))
    kept, widths = {}, {}
    for group in groups:
        mask = torch.ones(group.channels, dtype=torch.bool)
        mask[torch.as_tensor(pruned[group.name], dtype=torch.long)] = False
        if not mask.any():
            raise ValueError(f'every channel of {group.name} is pruned')
        kept[group.name] = mask.nonzero().flatten()
        widths[group.name] = int(mask.sum())
    narrow_groups_(backbone, groups, kept)
    return widths


def _raw_outputs(model: nn.Module, inputs: torch.Tensor) -> List[torch.Tensor]:
    size = tuple(inputs.shape[-2:])
    samples = [DetDataSample(metainfo=dict(
        img_shape=size, ori_shape=size, pad_shape=size,
        batch_input_shape=size, scale_factor=(1.0, 1.0)))]
    with torch.no_grad():
        return [t.clone() for t in iter_tensors(
            model(inputs, samples, mode='tensor'))]


def _max_abs_diff(a: List[torch.Tensor], b: List[torch.Tensor]) -> float:
    if [t.shape for t in a] != [t.shape for t in b]:
        raise RuntimeError('the compact model\'s outputs have other shapes '
                           'than the pruned model\'s')
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def write_compact_config(cfg: Config, widths: Dict[str, int],
                         path: str) -> Config:
    """Write ``cfg`` with the backbone narrowed to ``widths``, without the
    pruning hook and without ``load_from``/``resume``; returns it."""
    compact = Config(cfg.to_dict())
    # A model compacted before keeps the widths of the maps not pruned again.
    compact.model.backbone.pruned_channels = {
        **(cfg.model.backbone.get('pruned_channels') or {}), **widths}
    hooks = [h for h in compact.get('custom_hooks', None) or []
             if h.get('type') not in PRUNING_HOOKS]
    compact.custom_hooks = hooks
    compact.load_from = None
    compact.resume = False
    with atomic_open(path, 'w', encoding='utf-8') as f:
        f.write(compact.pretty_text)
    return Config.fromfile(path)


def planned_widths(cfg: Config, sparsity: float,
                   layers: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """The widths ``ChannelPruningHook(sparsity, layers=layers)`` starts
    from on ``cfg``'s backbone (every map pruned to the same fraction):
    the memory of a pruned network before it is trained."""
    backbone = MODELS.build(cfg.model.backbone)
    pruner = ChannelPruner(backbone, sparsity, layers)
    counts = allocate(pruner.target, [g.channels for g in pruner.groups],
                      [g.channels - 1 for g in pruner.groups])
    return {g.name: g.channels - n for g, n in zip(pruner.groups, counts)}


def compact_pruned(config: str,
                   checkpoint: Optional[str],
                   out_dir: str,
                   cfg_options: Optional[dict] = None,
                   atol: float = 1e-4,
                   sparsity: Optional[float] = None,
                   input_size: Optional[Tuple[int, int]] = None,
                   memory: bool = True) -> CompactResult:
    """Write the compact config and checkpoint of a channel-pruned model.

    With a checkpoint trained with ``ChannelPruningHook``, the pruned
    channels (the masks it saved) are removed from a copy of the model, the
    compact config is written, a model built from it loads the compact
    weights (strictly), and its raw outputs on a random input are compared
    with the pruned model's: nothing is written unless they agree within
    ``atol``. Without a checkpoint, ``sparsity`` gives the widths the hook
    starts from and only the config is written (for memory planning).

    Args:
        config (str): The config the checkpoint was trained with.
        checkpoint (str, optional): The pruned checkpoint.
        out_dir (str): Where ``<config name>_compact.py`` (and ``.pth``)
            go; created if missing.
        cfg_options (dict, optional): Overrides, as mmdet's --cfg-options.
        atol (float): Largest accepted output difference. Default: 1e-4.
        sparsity (float, optional): Only without a checkpoint.
        input_size (tuple, optional): (H, W) of the comparison and memory
            input; default: the config's test size.
        memory (bool): Also measure the activation memory of the first
            stage and of the backbone before and after (see
            :func:`pruning_memory`). Default: True.

    Returns:
        CompactResult
    """
    if (checkpoint is None) == (sparsity is None):
        raise ValueError('give a pruned checkpoint, or (to plan widths '
                         'before training) a sparsity, not both')
    cfg = load_config(config, cfg_options)
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} not found')
    stem = osp.splitext(osp.basename(config))[0] + '_compact'
    config_path = osp.join(out_dir, stem + '.py')

    if checkpoint is None:
        hook_layers = [h.get('layers') for h in cfg.get('custom_hooks', [])
                       or [] if h.get('type') in PRUNING_HOOKS]
        widths = planned_widths(cfg, sparsity,
                                hook_layers[0] if hook_layers else None)
        model = MODELS.build(cfg.model)
        channels = {g.name: (g.channels, widths[g.name])
                    for g in model.backbone.channel_groups()
                    if g.name in widths}
        # created once the arguments are known to be good: a refused
        # sparsity or checkpoint leaves no empty folder behind
        os.makedirs(out_dir, exist_ok=True)
        compact_cfg = write_compact_config(cfg, widths, config_path)
        compact = MODELS.build(compact_cfg.model)
        result = CompactResult(config_path, '', channels, (
            _params(model), _params(compact)))
        if memory:
            result.memory = pruning_memory(
                cfg, compact_cfg, input_size or infer_input_size(cfg))
        return result

    ckpt = read_checkpoint(checkpoint)
    state = ckpt.get('channel_pruning')
    if not state or 'pruned' not in state:
        raise ValueError(
            f'{checkpoint} holds no channel-pruning masks: it was not '
            f'trained with ChannelPruningHook (see '
            f'configs/ssd_mbv2_nlp_cp.py)')
    model = MODELS.build(cfg.model)
    check_weights_fit(model, checkpoint_state_dict(ckpt), checkpoint)
    model.load_state_dict(checkpoint_state_dict(ckpt))
    model.eval()
    before = {g.name: g.channels for g in model.backbone.channel_groups()}
    params_before = _params(model)
    size = input_size or infer_input_size(cfg)
    inputs = torch.randn(1, 3, *size,
                         generator=torch.Generator().manual_seed(0))
    reference = _raw_outputs(model, inputs)

    widths = compact_model_(model, state['pruned'])
    compact_state = {k: v.detach().cpu()
                     for k, v in model.state_dict().items()}
    # Check the written config, not this in-place copy: a model built from
    # it must load the weights strictly and give the same outputs. The
    # config gets its name (an atomic rename) once the checkpoint is out.
    os.makedirs(out_dir, exist_ok=True)
    tmp_config = osp.join(out_dir, f'.{stem}.{os.getpid()}.py')
    try:
        compact_cfg = write_compact_config(cfg, widths, tmp_config)
        compact = MODELS.build(compact_cfg.model)
        compact.load_state_dict(compact_state, strict=True)
        compact.eval()
        diff = _max_abs_diff(reference, _raw_outputs(compact, inputs))
        if not diff <= atol:
            raise RuntimeError(
                f'the compact model\'s outputs differ from the pruned '
                f'model\'s by {diff:.3g} > atol={atol}: are the pruned '
                f'channels zero in {checkpoint}? Nothing was written.')
        meta = dict(ckpt.get('meta') or {})
        meta['channel_pruning_compacted'] = dict(
            source=osp.basename(checkpoint), widths=widths,
            pruned=state['pruned'], max_abs_diff=diff)
        ckpt_path = osp.join(out_dir, stem + '.pth')
        with atomic_open(ckpt_path, 'wb') as f:
            torch.save(dict(meta=meta, state_dict=compact_state), f)
        os.replace(tmp_config, config_path)
    finally:
        if osp.exists(tmp_config):
            os.unlink(tmp_config)
    channels = {name: (before[name], widths[name]) for name in widths}
    result = CompactResult(config_path, ckpt_path, channels,
                           (params_before, _params(compact)), diff)
    if memory:
        result.memory = pruning_memory(cfg, compact_cfg, size)
    return result


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class StageMemory:
    """Activation memory of one model (batch 1, inference), in bytes, as
    :mod:`sapool_mmdet.analysis.memory` defines it.

    Attributes:
        model (str): 'pruned (full width)' or 'compact'.
        first_stage (str): The last module of the first stage: the
            first stage runs from the input to the end of the block (or
            stem layer, or pooling) that finishes last among those holding
            a pruned channel.
        first_peak (int): Peak while those parts run.
        first_total (int): All activations they create.
        peak (int): Peak of the whole backbone.
        total (int): All activations of the whole backbone.
        peak_layer (str): Where the backbone's peak is.
    """
    model: str
    first_stage: str
    first_peak: int
    first_total: int
    peak: int
    total: int
    peak_layer: str


class _StopForward(Exception):
    pass


def _trace_backbone(backbone: nn.Module, inputs: torch.Tensor,
                    last_part: Optional[str] = None):
    """Trace the backbone, or only its parts up to ``last_part``."""
    captured = {}
    handle = None
    if last_part is not None:
        def stop(module, args, output):
            captured['output'] = output
            raise _StopForward
        handle = backbone.get_submodule(last_part).register_forward_hook(
            stop)

    def run():
        try:
            with torch.no_grad():
                return backbone(inputs)
        except _StopForward:
            return captured['output']
    try:
        return trace_activations(backbone, run, inputs=[inputs])
    finally:
        if handle is not None:
            handle.remove()


def pruning_memory(full_cfg: Config, compact_cfg: Config,
                   input_size: Tuple[int, int]) -> List[StageMemory]:
    """Activation memory of the full-width (pruned) and the compact backbone:
    of the first stage (up to the end of the last block that holds a
    pruned channel, see :class:`StageMemory`) and of the whole backbone.

    The pruned network computes its zero channels, so its memory is that of
    the full-width network; the compact one's is what pruning saves.
    """
    widths = compact_cfg.model.backbone.get('pruned_channels') or {}
    full = MODELS.build(full_cfg.model.backbone)
    full.eval()
    inputs = torch.randn(1, 3, *input_size,
                         generator=torch.Generator().manual_seed(0))
    trace = _trace_backbone(full, inputs)
    # The block (or stem layer, or pooling) that finishes last among those
    # holding a pruned channel: the first stage ends with it.
    held = set()
    for group in full.channel_groups():
        if group.name in widths:
            held |= {u.norm or u.conv for u in group.producers}
            held |= set(group.poolings)
    blocks = {'.'.join(name.split('.')[:2]) for name in held}
    blocks = [b for b in blocks if b in trace.module_spans]
    last = max(blocks, key=lambda b: trace.module_spans[b][1]) \
        if blocks else None
    rows = []
    for label, cfg in (('full width', full_cfg), ('compact', compact_cfg)):
        backbone = MODELS.build(cfg.model.backbone)
        backbone.eval()
        whole = _trace_backbone(backbone, inputs)
        peak, step = whole.peak()
        stage = _trace_backbone(backbone, inputs, last) if last else None
        rows.append(StageMemory(
            label, last or '-', stage.peak()[0] if stage else 0,
            stage.total_bytes if stage else 0, peak, whole.total_bytes,
            whole.layer_at(step)))
    return rows


def memory_table(rows: Sequence[StageMemory]) -> str:
    """The rows of :func:`pruning_memory` as a Markdown table (MiB)."""
    mib = 2**20
    base = rows[0]

    def cell(value: int, ref: int) -> str:
        text = f'{value / mib:.3f}'
        return text if value == ref else f'{text} ({ref / value:.2f}x less)'

    lines = ['| model | first stage peak (MiB) | first stage total (MiB) | '
             'backbone peak (MiB) | backbone total (MiB) | layer at the '
             'peak |', '| --- | ---: | ---: | ---: | ---: | --- |']
    for row in rows:
        lines.append(
            f'| {row.model} | {cell(row.first_peak, base.first_peak)} | '
            f'{cell(row.first_total, base.first_total)} | '
            f'{cell(row.peak, base.peak)} | {cell(row.total, base.total)} | '
            f'{row.peak_layer} |')
    return '\n'.join(lines) + '\n'
