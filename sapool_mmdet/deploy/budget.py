"""The smallest driving detector that fits a memory budget
(``tools/fit_budget.py``).

Searches the package's own levers for SSDlite-MobileNetV2 detectors whose
deployed int8 peak activation memory (:mod:`sapool_mmdet.deploy.memory`)
fits a budget: the strides s1 and s2 of the first two stages, the
MobileNetV2 width, stem pooling, 2x channel pruning of the stem and the
first stage, the pooling method, and the input size (the largest that
fits, at most the one asked for).

Two passes, so that the answer comes in minutes on two CPU cores:

1. **Estimate** every architecture from one PyTorch trace at a reference
   size of at most 160x160 (:func:`~.estimate.estimate_peak`): the trace of
   :mod:`sapool_mmdet.analysis.memory` at one byte per element, with every
   norm and activation that directly follows a convolution folded into it,
   as onnxruntime folds them. Activation sizes grow with the input area, so
   the searched sizes are estimated by scaling.
2. **Confirm** the best estimates (most FLOPs, a proxy for capacity): write
   the config, export the detector (random weights: memory does not depend
   on them), quantise it to int8 (QDQ, calibrated on random inputs) and
   measure the deployed graph. A candidate over budget steps down one input
   size and is measured again.

The frontier is the confirmed candidates no other confirmed candidate
beats on both peak (lower) and FLOPs (higher).
"""
import copy
import math
import os
import os.path as osp
import pprint
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.utils import ProgressBar

from ..analysis.config import build_from_config, check_input_size
from ..fileio import atomic_open
from ..pooling import POOLING
from .estimate import (SIZE_STEP, check_budget_kib, estimate_peak,
                       input_sizes, reference_size)
from .export import FlatOutputs, find_unexportable
from .memory import DEFAULT_LEVEL, DeployedMemory

__all__ = ['STRIDED_CONV', 'RECIPES', 'Candidate', 'Estimate', 'Plan',
           'BudgetReport', 'configs_root', 'candidate_overrides',
           'candidate_config', 'write_candidate_config', 'estimate_peak',
           'estimate_candidate', 'measure_candidate', 'search_space',
           'input_sizes', 'reference_size', 'check_methods',
           'pareto_front', 'fit_budget', 'budget_text', 'budget_markdown']

STRIDED_CONV = 'conv'
# The shipped configs the written configs inherit: the paper's recipe or
# the demo's (synthetic set, light schedule, pooling at the stage input).
RECIPES = {
    'paper': {STRIDED_CONV: 'ssd_mbv2_conv.py', 'pool': 'ssd_mbv2_nlp.py'},
    'demo': {STRIDED_CONV: 'demo/ssd_mbv2_conv.py',
             'pool': 'demo/ssd_mbv2_nlp.py'},
}
WIDTHS = (1.0, 0.5, 0.35)
FIRST_STRIDES = (1, 2, 4)
SECOND_STRIDES = (2, 4)
# NLPool patch size per stage, as the shipped s1 = 1, 2, 4 configs: the
# largest patches on the largest maps.
PATCH_SIZES = {0: 8, 1: 8, 2: 4, 3: 2, 4: 1, 5: 1, 6: 1}
STOCK_STRIDES = (1, 2, 2, 2, 1, 2, 1)
# SSDlite's stride-16 map (stage 5) feeds the neck, then the last 1x1 conv.
NECK_STAGE_CHANNELS = 96
PRUNE_SPARSITY = 0.5


@dataclass(frozen=True)
class Candidate:
    """One point of the search.

    Attributes:
        method (str): 'conv' (the stock strided convolutions; a stride-4
            stage gets ConvPool as configs/ssd_mbv2_conv_s4.py) or a
            registered pooling type in every down-sampling stage.
        s1 (int): Stride of the first stage.
        s2 (int): Stride of the second stage.
        width (float): MobileNetV2 ``widen_factor``.
        stem_pooling (bool): The pooling takes over the stem's stride 2.
        pruned (bool): The stem and first-stage maps pruned 2x.
        input_size (tuple[int, int]): (H, W).
    """
    method: str
    s1: int
    s2: int
    width: float
    stem_pooling: bool
    pruned: bool
    input_size: Tuple[int, int]

    @property
    def name(self) -> str:
        parts = [self.method.lower(), f's{self.s1}{self.s2}',
                 f'w{int(round(self.width * 100)):03d}']
        parts += ['stem'] if self.stem_pooling else []
        parts += ['cp'] if self.pruned else []
        parts.append(f'{self.input_size[0]}x{self.input_size[1]}')
        return '_'.join(parts)

    @property
    def levers(self) -> str:
        text = (f'{self.method} s1={self.s1} s2={self.s2} '
                f'{self.width:g}x')
        text += ' +stem-pool' if self.stem_pooling else ''
        text += ' +CP' if self.pruned else ''
        return text


@dataclass
class Estimate:
    """The cheap estimate of one architecture at one input size."""
    peak_bytes: int
    peak_layer: str
    flops: int
    params: int
    input_size: Tuple[int, int]


@dataclass
class Plan:
    """A candidate with its estimate and, once confirmed, its deployed
    int8 peak (:func:`~sapool_mmdet.deploy.memory.deployed_memory`)."""
    candidate: Candidate
    estimate: Estimate
    deployed_peak_bytes: Optional[int] = None
    deployed_node: str = ''
    onnxruntime_peak_bytes: Optional[int] = None
    input_share: float = 0.0
    config: str = ''

    @property
    def peak_bytes(self) -> int:
        return (self.deployed_peak_bytes if self.deployed_peak_bytes
                is not None else self.estimate.peak_bytes)

    def as_dict(self) -> dict:
        data = asdict(self)
        data['name'] = self.candidate.name
        return data


@dataclass
class BudgetReport:
    """What :func:`fit_budget` found.

    Attributes:
        budget_bytes (int): The budget.
        input_size (tuple[int, int]): The largest size searched.
        frontier (list[Plan]): Confirmed candidates that fit, none beaten
            on both peak and FLOPs, by peak.
        confirmed (list[Plan]): Every candidate measured.
        best (dict[str, Plan]): The most FLOPs per method among those that
            fit.
        floor (str): Why nothing fits, when nothing does.
        estimated (int): Architectures estimated.
        failed (dict[str, str]): Candidates whose export or quantisation
            failed, with the error.
    """
    budget_bytes: int
    input_size: Tuple[int, int]
    frontier: List[Plan] = field(default_factory=list)
    confirmed: List[Plan] = field(default_factory=list)
    best: Dict[str, Plan] = field(default_factory=dict)
    floor: str = ''
    estimated: int = 0
    failed: Dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(budget_bytes=self.budget_bytes,
                    input_size=list(self.input_size),
                    frontier=[p.as_dict() for p in self.frontier],
                    confirmed=[p.as_dict() for p in self.confirmed],
                    best={k: p.as_dict() for k, p in self.best.items()},
                    floor=self.floor, estimated=self.estimated,
                    failed=dict(self.failed))


def configs_root() -> str:
    """The shipped ``configs/`` folder of this checkout."""
    return osp.abspath(osp.join(osp.dirname(__file__), '..', '..',
                                'configs'))


def _make_divisible(value: float, divisor: int = 8) -> int:
    # mmdet's make_divisible (min_ratio 0.9), which MobileNetV2 widths use.
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _strides(candidate: Candidate) -> Tuple[int, ...]:
    return (candidate.s1, candidate.s2) + STOCK_STRIDES[2:]


def _feature_sizes(candidate: Candidate) -> List[Tuple[int, int]]:
    """(h, w) of the six maps the SSDlite head sees: every stride-s layer
    maps n to ceil(n / s) (the pooling contract; a padded 3x3 stride-2 conv
    does the same)."""
    h, w = candidate.input_size
    h, w = -(-h // 2), -(-w // 2)
    sizes = []
    for stage, stride in enumerate(_strides(candidate)):
        h, w = -(-h // stride), -(-w // stride)
        if stage == 4:
            sizes.append((h, w))
    sizes.append((h, w))
    for _ in range(4):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


def _base_config(candidate: Candidate, recipe: str) -> str:
    key = STRIDED_CONV if candidate.method == STRIDED_CONV else 'pool'
    return osp.join(configs_root(), RECIPES[recipe][key])


def _stage_pooling(candidate: Candidate, base: Config) -> list:
    pooling = []
    if candidate.method == STRIDED_CONV:
        # mmdet's InvertedResidual takes strides 1 and 2 only.
        return [dict(type='ConvPool') if s > 2 else None
                for s in _strides(candidate)]
    template = next((p for p in base.model.backbone.get('pooling') or []
                     if p and p.get('type') == candidate.method), None)
    for stage, stride in enumerate(_strides(candidate)):
        if stride == 1:
            pooling.append(None)
        elif template is not None:
            entry = dict(template)
            if 'patch_size' in entry:
                entry['patch_size'] = PATCH_SIZES[stage]
            pooling.append(entry)
        else:
            pooling.append(dict(type=candidate.method))
    return pooling


def _first_stage_widths(model_cfg: dict) -> Dict[str, int]:
    """2x pruning of the stem and first-stage maps (the widths
    ``ChannelPruningHook(sparsity=0.5)`` keeps)."""
    from mmdet.registry import MODELS

    from ..engine.pruning import ChannelPruner, allocate
    backbone = MODELS.build(model_cfg['backbone'])
    names = [g.name for g in backbone.channel_groups()
             if not g.unsupported and (g.name == 'conv1'
                                       or g.name.startswith('layer1.'))]
    if not names:
        raise ValueError('no map of the stem or first stage can be pruned '
                         'in this backbone')
    pruner = ChannelPruner(backbone, PRUNE_SPARSITY, names)
    counts = allocate(pruner.target, [g.channels for g in pruner.groups],
                      [g.channels - 1 for g in pruner.groups])
    return {g.name: g.channels - n for g, n in zip(pruner.groups, counts)}


def _pipeline_path(loader: dict) -> List[str]:
    """Keys from a dataloader down to its dataset's pipeline (mmdet's SSD
    wraps the dataset in a RepeatDataset)."""
    path, dataset = ['dataset'], loader['dataset']
    while 'pipeline' not in dataset and 'dataset' in dataset:
        path.append('dataset')
        dataset = dataset['dataset']
    return path if 'pipeline' in dataset else []


def _resized_pipelines(base: Config, size: Tuple[int, int]) -> dict:
    overrides = {}
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = base.get(key)
        path = _pipeline_path(loader) if loader else []
        if not path:
            continue
        dataset = loader
        for name in path:
            dataset = dataset[name]
        pipeline = []
        for transform in dataset['pipeline']:
            transform = dict(transform)
            if str(transform.get('type', '')).split('.')[-1] == 'Resize':
                transform['scale'] = (size[1], size[0])
            pipeline.append(transform)
        nested = dict(pipeline=pipeline)
        for name in reversed(path):
            nested = {name: nested}
        overrides[key] = nested
    return overrides


def candidate_overrides(candidate: Candidate, base: Config) -> dict:
    """The differences from ``base`` (a shipped SSDlite config) that make
    ``candidate``: what the written config holds besides ``_base_``."""
    height, width = candidate.input_size
    backbone = dict(
        strides=_strides(candidate),
        pooling=_stage_pooling(candidate, base),
        widen_factor=candidate.width)
    if candidate.method == STRIDED_CONV:
        backbone['pool_position'] = 'pre'
    if candidate.stem_pooling:
        backbone['stem_pooling'] = dict(type=candidate.method)
    neck_in = (_make_divisible(NECK_STAGE_CHANNELS * candidate.width),
               1280 if candidate.width <= 1 else
               _make_divisible(1280 * candidate.width))
    out_channels = neck_in + tuple(base.model.neck.out_channels[2:])
    anchors = base.model.bbox_head.anchor_generator
    base_size = min(_base_input_size(base))
    scale = min(height, width) / base_size
    strides = [(round(width / w), round(height / h)) if height != width
               else round(height / h)
               for h, w in _feature_sizes(candidate)]
    model = dict(
        backbone=backbone,
        neck=dict(in_channels=neck_in, out_channels=out_channels),
        bbox_head=dict(
            in_channels=out_channels,
            anchor_generator=dict(
                strides=strides,
                min_sizes=[round(s * scale) for s in anchors.min_sizes],
                max_sizes=[round(s * scale) for s in anchors.max_sizes])))
    if candidate.pruned:
        model['backbone']['pruned_channels'] = _first_stage_widths(
            _merged_model(base, model))
    overrides = dict(model=model)
    if (height, width) != _base_input_size(base):
        overrides.update(_resized_pipelines(base, (height, width)))
    return overrides


def _merged_model(base: Config, model: dict) -> dict:
    merged = Config(dict(model=base.model.to_dict()))
    merged.merge_from_dict(dict(model=model))
    return merged.model.to_dict()


def _base_input_size(base: Config) -> Tuple[int, int]:
    from ..analysis.config import infer_input_size
    return infer_input_size(base)


def write_candidate_config(candidate: Candidate, path: str,
                           recipe: str = 'paper',
                           header: Sequence[str] = ()) -> str:
    """Write the config that trains ``candidate``: ``_base_`` the shipped
    config of its method and recipe (relative to ``path``), then the
    differences (:func:`candidate_overrides`). Returns ``path``."""
    base_path = _base_config(candidate, recipe)
    base = Config.fromfile(base_path)
    overrides = candidate_overrides(candidate, base)
    relative = osp.relpath(base_path, osp.dirname(osp.abspath(path)))
    lines = [f'# {line}' if line else '#' for line in header]
    lines.append(f'# {candidate.levers}, input {candidate.input_size[0]}x'
                 f'{candidate.input_size[1]}.')
    lines.append(f'_base_ = {relative!r}')
    for key, value in overrides.items():
        lines.append('')
        prefix = f'{key} = '
        text = pprint.pformat(value, width=79 - len(prefix),
                              sort_dicts=False)
        lines.append(prefix + text.replace('\n', '\n' + ' ' * len(prefix)))
    text = '\n'.join(lines) + '\n'
    with atomic_open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    return path


_BASES: Dict[str, Config] = {}


def candidate_config(candidate: Candidate, recipe: str = 'paper') -> Config:
    """The config :func:`write_candidate_config` writes, built in memory
    (the shipped base is read once)."""
    path = _base_config(candidate, recipe)
    if path not in _BASES:
        _BASES[path] = Config.fromfile(path)
    cfg = copy.deepcopy(_BASES[path])
    cfg.merge_from_dict(candidate_overrides(candidate, cfg))
    return cfg


def estimate_candidate(candidate: Candidate,
                       recipe: str = 'paper') -> Estimate:
    """Build ``candidate``'s detector (random weights) and estimate its
    int8 peak and multiply-adds (:func:`estimate_peak`) and count its
    parameters, at its input size."""
    detector = build_from_config(candidate_config(candidate, recipe),
                                 'detector')
    wrapped = FlatOutputs(detector, tensor_mode=True)
    inputs = torch.randn(1, 3, *candidate.input_size,
                         generator=torch.Generator().manual_seed(0))
    peak, layer, flops = estimate_peak(detector, inputs,
                                       lambda: wrapped(inputs))
    return Estimate(peak, layer, int(flops),
                    sum(p.numel() for p in detector.parameters()),
                    candidate.input_size)


def _scaled(estimate: Estimate, size: Tuple[int, int]) -> Estimate:
    height, width = estimate.input_size
    ratio = size[0] * size[1] / (height * width)
    return Estimate(int(math.ceil(estimate.peak_bytes * ratio)),
                    estimate.peak_layer, int(estimate.flops * ratio),
                    estimate.params, size)


def measure_candidate(candidate: Candidate, config_path: str,
                      level: str = DEFAULT_LEVEL
                      ) -> Tuple[DeployedMemory, DeployedMemory]:
    """Export the detector of ``config_path`` (random weights) at the
    candidate's size, quantise it to int8 (QDQ, calibrated on random
    inputs) and measure the deployed graph.

    Returns:
        tuple[DeployedMemory, DeployedMemory]: The graph accounted as an
        all-int8 runtime holds it (the budget figure), and as
        onnxruntime's CPU kernels run it (some operators in float).
    """
    from .config_memory import export_and_measure
    detector = build_from_config(Config.fromfile(config_path), 'detector')
    measured = export_and_measure(detector, candidate.input_size,
                                  level=level, float32=False)
    return measured['int8'], measured['int8_onnxruntime']


def search_space(methods: Sequence[str],
                 input_size: Tuple[int, int],
                 widths: Sequence[float] = WIDTHS,
                 first_strides: Sequence[int] = FIRST_STRIDES,
                 second_strides: Sequence[int] = SECOND_STRIDES,
                 stem_pooling: Sequence[bool] = (False, True),
                 pruning: Sequence[bool] = (False, True)
                 ) -> List[Candidate]:
    """Every combination of the levers at ``input_size`` (stem pooling
    only for pooling methods: the strided-conv stem already down-samples
    with a strided conv)."""
    out = []
    for method in methods:
        for s1 in first_strides:
            for s2 in second_strides:
                for width in widths:
                    for stem in stem_pooling:
                        if stem and method == STRIDED_CONV:
                            continue
                        for pruned in pruning:
                            out.append(Candidate(method, s1, s2, width,
                                                 stem, pruned,
                                                 tuple(input_size)))
    return out


def check_methods(methods: Sequence[str]) -> List[str]:
    """Return ``methods`` if each is 'conv' or a registered pooling type
    that exports to ONNX, else raise ValueError naming the valid ones."""
    from ..pooling import build_pooling
    valid = [STRIDED_CONV] + sorted(
        name for name in POOLING.module_dict
        if not find_unexportable(build_pooling(dict(type=name), 16, 2)))
    if not methods:
        raise ValueError(f'give at least one method; valid: {valid}')
    for method in methods:
        if method not in valid:
            raise ValueError(
                f'pooling method {method!r} cannot be planned: the planner '
                f'measures the exported ONNX graph; valid: {valid}')
    return list(dict.fromkeys(methods))


def pareto_front(plans: Iterable[Plan]) -> List[Plan]:
    """Plans no other plan beats on both peak (lower or equal) and FLOPs
    (higher or equal, one of them strictly), by peak."""
    plans = list(plans)
    front = []
    for plan in plans:
        beaten = any(
            other.peak_bytes <= plan.peak_bytes
            and other.estimate.flops >= plan.estimate.flops
            and (other.peak_bytes < plan.peak_bytes
                 or other.estimate.flops > plan.estimate.flops)
            for other in plans)
        if not beaten:
            front.append(plan)
    return sorted(front, key=lambda p: (p.peak_bytes, -p.estimate.flops))


def _floor(budget: int, size: Tuple[int, int],
           estimates: Dict[Candidate, Estimate], smallest: Tuple[int, int],
           keep_size: bool) -> str:
    image = 3 * size[0] * size[1]
    low_cand = min(estimates, key=lambda c: estimates[c].peak_bytes)
    low = _scaled(estimates[low_cand], size)
    at_smallest = _scaled(low, smallest)
    lines = []
    if image > budget:
        lines.append(
            f'the int8 input image alone is {image / 1024:.1f} KiB at '
            f'{size[0]}x{size[1]} (3 bytes per pixel), over the '
            f'{budget / 1024:.0f} KiB budget')
    lines.append(
        f'the smallest estimated peak at {size[0]}x{size[1]} is '
        f'{low.peak_bytes / 1024:.1f} KiB ({low_cand.levers}, at '
        f'{low.peak_layer}: the input image and the first maps are live '
        f'together there)')
    if not keep_size:
        lines.append(
            f'at the smallest size searched, {smallest[0]}x{smallest[1]}, '
            f'it is about {at_smallest.peak_bytes / 1024:.1f} KiB')
    return 'nothing fits: ' + '; '.join(lines)


def _check_levers(widths: Sequence[float], first_strides: Sequence[int],
                  second_strides: Sequence[int], min_size: int) -> None:
    for name, values in (('s1', first_strides), ('s2', second_strides)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int)
                             or v < 1 for v in values):
            raise ValueError(f'{name} values must be integers >= 1, got '
                             f'{list(values)!r}')
    if not widths or any(not isinstance(w, (int, float)) or not 0 < w <= 2
                         for w in widths):
        raise ValueError(f'widths must be numbers in (0, 2], got '
                         f'{list(widths)!r}')
    if isinstance(min_size, bool) or not isinstance(min_size, int) or \
            min_size < SIZE_STEP:
        raise ValueError(f'min_size must be an integer >= {SIZE_STEP}, got '
                         f'{min_size!r}')


def fit_budget(budget_kib: float,
               input_size: Sequence[int],
               out_dir: Optional[str] = None,
               methods: Sequence[str] = ('NLPool', STRIDED_CONV),
               recipe: str = 'paper',
               widths: Sequence[float] = WIDTHS,
               first_strides: Sequence[int] = FIRST_STRIDES,
               second_strides: Sequence[int] = SECOND_STRIDES,
               stem_pooling: Sequence[bool] = (False, True),
               pruning: Sequence[bool] = (False, True),
               keep_size: bool = False,
               min_size: int = 64,
               confirm: int = 4,
               level: str = DEFAULT_LEVEL,
               progress: bool = True) -> BudgetReport:
    """Search the levers for detectors whose deployed int8 peak fits
    ``budget_kib``; see the module docstring for the two passes.

    Args:
        budget_kib (float): Activation memory budget in KiB (1024 bytes).
        input_size (Sequence[int]): (H, W), the largest input searched.
        out_dir (str, optional): Folder (created) for the configs of the
            confirmed candidates and ``fit_budget.{json,md}``.
        methods (Sequence[str]): 'conv' and/or exportable pooling types.
        recipe (str): 'paper' or 'demo': the shipped configs the written
            ones inherit (:data:`RECIPES`).
        widths, first_strides, second_strides, stem_pooling, pruning:
            The lever values searched.
        keep_size (bool): Search only ``input_size``. Default: False.
        min_size (int): Smallest height searched. Default: 64.
        confirm (int): Candidates measured per method (the most FLOPs
            among estimates that fit). Default: 4.
        level (str): onnxruntime optimisation level of the measured graph.

    Returns:
        BudgetReport

    Raises:
        ValueError: for a budget <= 0, a bad size, an unknown recipe or a
            method that cannot be exported.
    """
    check_budget_kib(budget_kib)
    size = check_input_size(list(input_size))
    if recipe not in RECIPES:
        raise ValueError(f'recipe must be one of {sorted(RECIPES)}, got '
                         f'{recipe!r}')
    methods = check_methods(list(methods))
    if isinstance(confirm, bool) or not isinstance(confirm, int) or \
            confirm < 1:
        raise ValueError(f'confirm must be an integer >= 1, got {confirm!r}')
    _check_levers(widths, first_strides, second_strides, min_size)
    budget = int(budget_kib * 1024)
    sizes = [size] if keep_size else input_sizes(size, min_size)
    # Traced at the largest searched size of at most ESTIMATE_AREA pixels
    # and scaled: the search's cost does not grow with the input size.
    reference = reference_size(size)
    space = search_space(methods, reference, widths, first_strides,
                         second_strides, stem_pooling, pruning)
    report = BudgetReport(budget, size, estimated=len(space))
    bar = ProgressBar(len(space), file=sys.stderr) if progress else None
    estimates = {}
    for candidate in space:
        try:
            estimates[candidate] = estimate_candidate(candidate, recipe)
        except ValueError:
            # A lever combination the backbone cannot build (e.g. pruning
            # a map that runs through a strided ConvPool): not a candidate.
            if not candidate.pruned:
                raise
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')

    fitting = []
    for candidate, estimate in estimates.items():
        for at in sizes:
            scaled = _scaled(estimate, at)
            if scaled.peak_bytes <= budget:
                fitting.append(Plan(replace(candidate, input_size=at),
                                    scaled))
                break
    if not fitting:
        report.floor = _floor(budget, size, estimates, sizes[-1], keep_size)
        _write_report(report, out_dir)
        return report

    folder = out_dir or tempfile.mkdtemp(prefix='sapool_budget_')
    os.makedirs(folder, exist_ok=True)
    chosen = []
    for method in methods:
        mine = [p for p in fitting if p.candidate.method == method]
        mine.sort(key=lambda p: -p.estimate.flops)
        chosen += mine[:confirm]
    for plan in chosen:
        try:
            report.confirmed.append(_confirm(plan, sizes, budget, recipe,
                                             folder, level, progress))
        # onnxruntime's quantisation tools raise bare Exceptions: one
        # candidate that cannot be measured must not lose the search.
        except Exception as error:
            report.failed[plan.candidate.name] = (
                f'{type(error).__name__}: {error}')
            if progress:
                print(f'[fit_budget] could not measure '
                      f'{plan.candidate.name}: {error}', file=sys.stderr)
    fits = [p for p in report.confirmed if p.peak_bytes <= budget]
    report.frontier = pareto_front(fits)
    for method in methods:
        mine = [p for p in fits if p.candidate.method == method]
        if mine:
            report.best[method] = max(mine, key=lambda p: p.estimate.flops)
    if not fits:
        report.floor = (
            'nothing confirmed: every candidate the estimate put under '
            'the budget measured over it on the deployed graph, also one '
            'size smaller')
    for plan in report.confirmed:
        if plan not in fits and plan.config and osp.isfile(plan.config):
            os.remove(plan.config)
    _write_report(report, out_dir)
    return report


def _write_report(report: BudgetReport, out_dir: Optional[str]) -> None:
    """``fit_budget.{json,md}`` in ``out_dir`` (created), if given."""
    if not out_dir:
        return
    import json
    os.makedirs(out_dir, exist_ok=True)
    with atomic_open(osp.join(out_dir, 'fit_budget.json'), 'w',
                     encoding='utf-8') as f:
        json.dump(report.as_dict(), f, indent=2)
        f.write('\n')
    with atomic_open(osp.join(out_dir, 'fit_budget.md'), 'w',
                     encoding='utf-8') as f:
        f.write(budget_markdown(report))


def _confirm(plan: Plan, sizes: List[Tuple[int, int]], budget: int,
             recipe: str, folder: str, level: str,
             progress: bool) -> Plan:
    """Estimate ``plan`` at its own size (exact FLOPs there), write its
    config and measure it; over budget, the same one size smaller."""
    candidate = plan.candidate
    index = sizes.index(candidate.input_size)
    for attempt in range(2):
        if progress:
            print(f'[fit_budget] measuring {candidate.name} (estimated '
                  f'{plan.estimate.peak_bytes / 1024:.1f} KiB)',
                  file=sys.stderr)
        estimate = estimate_candidate(candidate, recipe)
        path = osp.join(folder, f'{candidate.name}.py')
        write_candidate_config(candidate, path, recipe, header=(
            'Written by tools/fit_budget.py: train it as any config, e.g.',
            f'  python tools/train.py {path}'))
        try:
            measured, as_run = measure_candidate(candidate, path, level)
        except Exception:
            # --out holds configs of measured candidates only
            os.remove(path)
            raise
        plan = Plan(candidate, estimate,
                    deployed_peak_bytes=measured.peak_bytes,
                    deployed_node=measured.peak_node,
                    onnxruntime_peak_bytes=as_run.peak_bytes,
                    input_share=measured.input_share, config=path)
        if measured.peak_bytes <= budget or attempt == 1 or \
                index + 1 >= len(sizes):
            break
        os.remove(path)
        index += 1
        candidate = replace(candidate, input_size=sizes[index])
    return plan


def _row(plan: Plan) -> List[str]:
    c, e = plan.candidate, plan.estimate
    deployed, as_run = (
        '-' if value is None else f'{value / 1024:.1f}'
        for value in (plan.deployed_peak_bytes, plan.onnxruntime_peak_bytes))
    return [c.levers, f'{c.input_size[0]}x{c.input_size[1]}',
            f'{e.peak_bytes / 1024:.1f}', deployed, as_run,
            f'{100 * plan.input_share:.0f}%', plan.deployed_node or
            e.peak_layer, f'{e.flops / 1e6:.0f}', f'{e.params / 1e6:.2f}',
            osp.basename(plan.config)]


_HEADER = ['levers', 'input', 'est. int8 peak (KiB)',
           'deployed int8 peak (KiB)', 'onnxruntime int8 peak (KiB)',
           'input share', 'node at the peak',
           'MFLOPs', 'params (M)', 'config']


def budget_text(report: BudgetReport) -> str:
    """The frontier as a terminal table, or why nothing fits."""
    from terminaltables import AsciiTable
    head = (f'budget {report.budget_bytes / 1024:.0f} KiB, input up to '
            f'{report.input_size[0]}x{report.input_size[1]}, '
            f'{report.estimated} architectures estimated, '
            f'{len(report.confirmed)} measured')
    if not report.frontier:
        return f'{head}\n{report.floor}\n'
    table = AsciiTable([_HEADER] + [_row(p) for p in report.frontier],
                       'frontier (deployed int8 peak vs FLOPs)').table
    notes = [f'best {method}: {plan.candidate.name} -> {plan.config}'
             for method, plan in report.best.items()]
    notes += [f'could not measure {name}: {error}'
              for name, error in report.failed.items()]
    return f'{head}\n{table}\n' + '\n'.join(notes) + '\n'


def _markdown_table(plans: Sequence[Plan]) -> List[str]:
    lines = ['| ' + ' | '.join(_HEADER) + ' |',
             '|' + '|'.join([' --- ', ' --- '] + [' ---: '] * 4 +
                            [' --- ', ' ---: ', ' ---: ', ' --- ']) + '|']
    return lines + ['| ' + ' | '.join(_row(p)) + ' |' for p in plans]


def budget_markdown(report: BudgetReport) -> str:
    """The frontier, the best per method and every measured candidate as
    Markdown, or why nothing fits."""
    head = (f'Budget {report.budget_bytes / 1024:.0f} KiB, input up to '
            f'{report.input_size[0]}x{report.input_size[1]}, '
            f'{report.estimated} architectures estimated, '
            f'{len(report.confirmed)} measured.\n\n')
    if not report.frontier:
        return head + report.floor + '\n'
    lines = ['Frontier (deployed int8 peak against FLOPs):', '']
    lines += _markdown_table(report.frontier)
    lines += ['', 'Most FLOPs per method among the measured that fit:', '']
    lines += [f'- {method}: {plan.candidate.levers} at '
              f'{plan.candidate.input_size[0]}x{plan.candidate.input_size[1]}'
              f' ({osp.basename(plan.config)})'
              for method, plan in report.best.items()]
    lines += ['', 'Every candidate measured (the estimates with the most '
              'FLOPs per method):', '']
    lines += _markdown_table(report.confirmed)
    lines += [''] + [f'Could not be measured: {name} ({error})'
                     for name, error in report.failed.items()]
    return head + '\n'.join(lines).rstrip() + '\n'
