"""Activation memory, parameters, FLOPs and latency of a backbone or a
detector, per stage and in total (``tools/analyze_model.py``)."""
import os.path as osp
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.structures import DetDataSample
from mmengine.utils import ProgressBar

from .config import (SCOPES, build_from_config, check_input_size,
                     infer_input_size, load_config)
from .flops import count_flops
from .latency import check_run_times, check_threads, measure_latency
from .memory import ActivationTrace, ModuleOutput, trace_activations

__all__ = ['StageReport', 'ModelReport', 'analyze_model', 'analyze_config',
           'analyze_configs']


@dataclass
class StageReport:
    """One backbone stage (or detector part).

    Attributes:
        name (str): Module name, e.g. 'layer2' or 'backbone.layer2'.
        output_shapes (list): Shapes of the tensors it returns; empty when
            its ``forward`` is called directly (mmdet's dense heads), which
            hooks do not see.
        output_bytes (int): Their size as computed (fp32).
        output_bytes_int8 (int): Their size at one byte per element.
        peak_bytes (int): Peak activation memory while the stage runs.
        peak_layer (str): 'module (operator)' where that peak occurs.
    """
    name: str
    output_shapes: List[Tuple[int, ...]]
    output_bytes: int
    output_bytes_int8: int
    peak_bytes: int
    peak_layer: str


@dataclass
class ModelReport:
    """Everything ``tools/analyze_model.py`` reports for one config.

    Peak activation memory follows the definition in
    :mod:`sapool_mmdet.analysis.memory`, total activation memory is the sum
    of all activations created (nothing freed); FLOPs the convention in
    :mod:`sapool_mmdet.analysis.flops` (multiply-add = 1, attention
    counted); latency is the median time of one batch-1 inference forward
    on the model's device (``torch.utils.benchmark.Timer``), with the
    interquartile range of the timed blocks and the intra-op thread count.
    """
    config: str
    scope: str
    input_size: Tuple[int, int]
    params: int
    flops: int
    peak_activation_bytes: int
    peak_activation_bytes_int8: int
    peak_layer: str
    total_activation_bytes: int
    latency_ms: float
    latency_iqr_ms: float
    latency_threads: int
    stages: List[StageReport] = field(default_factory=list)
    flops_by_operator: Dict[str, int] = field(default_factory=dict)
    flops_skipped: Dict[str, int] = field(default_factory=dict)
    cfg_options: Dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class _DetectorTensorForward(nn.Module):
    """``detector(inputs, data_samples, mode='tensor')`` as a one-input
    module, so that the jit tracer behind the FLOP count can run it."""

    def __init__(self, detector: nn.Module, data_samples: list) -> None:
        super().__init__()
        self.detector = detector
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.detector(inputs, self.data_samples, mode='tensor')


def _data_samples(input_size: Tuple[int, int]) -> List[DetDataSample]:
    """Meta information of one unpadded, unscaled image of ``input_size``
    (two-stage detectors read it to place their proposals)."""
    return [DetDataSample(metainfo=dict(
        img_shape=input_size, ori_shape=input_size, pad_shape=input_size,
        batch_input_shape=input_size, scale_factor=(1.0, 1.0)))]


def _stage_names(model: nn.Module, scope: str) -> List[str]:
    """The backbone's direct submodules, then (detector scope) the
    detector's other parts."""
    if scope == 'backbone':
        return [name for name, _ in model.named_children()]
    names = [f'backbone.{name}' for name, _ in
             model.backbone.named_children()]
    return names + [name for name, _ in model.named_children()
                    if name not in ('backbone', 'data_preprocessor')]


def _stage_reports(trace: ActivationTrace,
                   names: Sequence[str]) -> List[StageReport]:
    reports = []
    ran = [name for name in names if name in trace.module_spans]
    for name in sorted(ran, key=lambda n: trace.module_spans[n][0]):
        first, last = trace.module_spans[name]
        peak, step = trace.peak(first, last)
        output = trace.module_outputs.get(name, ModuleOutput([], 0, 0))
        reports.append(StageReport(name, output.shapes, output.nbytes,
                                   output.nbytes_int8, peak,
                                   trace.layer_at(step)))
    return reports


def analyze_model(model: nn.Module,
                  input_size: Sequence[int],
                  scope: str = 'backbone',
                  config: str = '',
                  min_run_time: float = 0.5,
                  max_run_time: float = 5.0,
                  threads: Optional[int] = None) -> ModelReport:
    """Measure a backbone or detector on one random (1, 3, H, W) input.

    Args:
        model (nn.Module): A backbone (scope 'backbone') or an mmdet
            detector (scope 'detector', run in its 'tensor' mode: backbone,
            neck and head, without box decoding and NMS). Put it in eval
            mode first.
        input_size (sequence of int): (H, W).
        scope (str): 'backbone' or 'detector'. Default: 'backbone'.
        config (str): Name stored in the report. Default: ''.
        min_run_time (float): Seconds of timed forwards at least, see
            :func:`~.latency.measure_latency`. Default: 0.5.
        max_run_time (float): Seconds of timed forwards at most.
            Default: 5.0.
        threads (int, optional): Intra-op threads for the timing; None
            keeps ``torch.get_num_threads()``. Default: None.

    Returns:
        ModelReport
    """
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}, got {scope!r}')
    input_size = check_input_size(input_size)
    device = next(model.parameters()).device
    inputs = torch.randn(1, 3, *input_size,
                         generator=torch.Generator().manual_seed(0)).to(device)
    traced = (_DetectorTensorForward(model, _data_samples(input_size))
              if scope == 'detector' else model)

    def forward():
        return traced(inputs)

    with torch.no_grad():
        trace = trace_activations(model, forward, inputs=[inputs])
        latency = measure_latency(forward, min_run_time, max_run_time,
                                  threads)
    flops = count_flops(traced, (inputs, ))
    peak, peak_step = trace.peak()
    return ModelReport(
        config=config,
        scope=scope,
        input_size=input_size,
        params=sum(p.numel() for p in model.parameters()),
        flops=flops.total,
        peak_activation_bytes=peak,
        peak_activation_bytes_int8=trace.peak_bytes_int8,
        peak_layer=trace.layer_at(peak_step),
        total_activation_bytes=trace.total_bytes,
        latency_ms=latency.median_ms,
        latency_iqr_ms=latency.iqr_ms,
        latency_threads=latency.threads,
        stages=_stage_reports(trace, _stage_names(model, scope)),
        flops_by_operator=flops.by_operator,
        flops_skipped=flops.skipped)


def analyze_config(path: str,
                   scope: str = 'backbone',
                   input_size: Optional[Sequence[int]] = None,
                   min_run_time: float = 0.5,
                   max_run_time: float = 5.0,
                   threads: Optional[int] = None,
                   cfg_options: Optional[dict] = None) -> ModelReport:
    """:func:`analyze_model` on the model a config builds (random weights).

    Args:
        path (str): mmdet config file.
        scope (str): 'backbone' or 'detector'. Default: 'backbone'.
        input_size (sequence of int, optional): (H, W); by default the
            config's test-pipeline size (:func:`~.config.infer_input_size`).
        min_run_time (float): See :func:`analyze_model`. Default: 0.5.
        max_run_time (float): See :func:`analyze_model`. Default: 5.0.
        threads (int, optional): See :func:`analyze_model`. Default: None.
        cfg_options (dict, optional): Overrides merged into the config, as
            mmdet's ``--cfg-options``; stored in the report.
    """
    cfg = load_config(path, cfg_options)
    size = (check_input_size(input_size, cfg, repr(path))
            if input_size is not None else infer_input_size(cfg))
    model = build_from_config(cfg, scope)
    report = analyze_model(model, size, scope, path, min_run_time,
                           max_run_time, threads)
    report.cfg_options = dict(cfg_options or {})
    return report


def analyze_configs(paths: Sequence[str],
                    scope: str = 'backbone',
                    input_size: Optional[Sequence[int]] = None,
                    min_run_time: float = 0.5,
                    max_run_time: float = 5.0,
                    threads: Optional[int] = None,
                    cfg_options: Optional[dict] = None,
                    progress: bool = True) -> List[ModelReport]:
    """:func:`analyze_config` for each config, with a progress bar on
    stderr. The arguments and every config file are checked before the
    first model is built."""
    check_run_times(min_run_time, max_run_time)
    check_threads(threads)
    missing = [path for path in paths if not osp.isfile(path)]
    if missing:
        raise FileNotFoundError(f'config file(s) not found: {missing}')
    if input_size is not None:
        check_input_size(input_size)
        for path in paths:
            check_input_size(input_size, load_config(path, cfg_options),
                             repr(path))
    bar = ProgressBar(len(paths), file=sys.stderr) if progress else None
    reports = []
    for path in paths:
        reports.append(analyze_config(path, scope, input_size,
                                      min_run_time, max_run_time, threads,
                                      cfg_options))
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return reports
