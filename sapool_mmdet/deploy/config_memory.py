"""Deployed against traced activation memory of a config's model
(``tools/analyze_model.py --deployed``).

The model is built with its initial weights (activation memory does not
depend on their values), exported to ONNX (float32) and quantised to int8
(QDQ, calibrated on random inputs), and each graph is measured after
onnxruntime's optimisations (:mod:`sapool_mmdet.deploy.memory`). The trace
of the PyTorch forward (:mod:`sapool_mmdet.analysis.memory`) is measured on
the same input for comparison.
"""
import logging
import os.path as osp
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..analysis.config import (build_from_config, check_input_size,
                               infer_input_size, load_config)
from ..analysis.memory import trace_activations
from .estimate import (check_budget_kib, estimate_peak, input_sizes,
                       reference_size)
from .export import FlatOutputs, export_module
from .memory import DEFAULT_LEVEL, DeployedMemory, deployed_memory

__all__ = ['DeployedReport', 'export_and_measure', 'largest_fitting_size',
           'deployed_config_memory', 'deployed_reports_table']


@dataclass
class DeployedReport:
    """Peaks of one model, in bytes.

    Attributes:
        name (str): Config (or ONNX file) name.
        input_size (tuple[int, int]): (H, W).
        traced (int): PyTorch trace, float32, nothing fused.
        traced_int8 (int): The same at one byte per element.
        float32 (int): Deployed float32 graph.
        int8_onnxruntime (int): Deployed int8 graph as onnxruntime's CPU
            kernels run it (int8 input and outputs).
        int8 (int): Deployed int8 graph with every activation int8.
        int8_node (str): The node at the ``int8`` peak.
        int8_input_share (float): The input's share of the ``int8`` peak.
        fits (dict[str, list]): Budget in KiB -> [H, W, deployed int8
            peak, measured] of the largest input (steps of 32 px, aspect
            kept) that fits it, or None when none does
            (:func:`largest_fitting_size`).
    """
    name: str
    input_size: Tuple[int, int]
    traced: Optional[int]
    traced_int8: Optional[int]
    float32: Optional[int]
    int8_onnxruntime: int
    int8: int
    int8_node: str
    int8_input_share: float
    fits: Dict[str, Optional[list]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def export_and_measure(model: nn.Module, input_size: Sequence[int],
                       tensor_mode: bool = True,
                       level: str = DEFAULT_LEVEL,
                       calib_count: int = 2,
                       float32: bool = True
                       ) -> Dict[str, DeployedMemory]:
    """Export ``model`` (a detector in tensor mode, or a backbone), quantise
    it and measure the deployed graphs.

    Args:
        model (nn.Module): In eval mode.
        input_size (Sequence[int]): (H, W).
        tensor_mode (bool): ``model`` is an mmdet detector (its tensor
            mode is exported). Default: True.
        level (str): onnxruntime optimisation level. Default: 'extended'.
        calib_count (int): Random calibration inputs. Default: 2.
        float32 (bool): Also measure the float32 graph. Default: True.

    Returns:
        dict[str, DeployedMemory]: 'int8' (every activation int8),
        'int8_onnxruntime' (as onnxruntime runs it) and, with ``float32``,
        'float32'.
    """
    size = check_input_size(list(input_size))
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((1, 3, *size)).astype(np.float32)
                   for _ in range(calib_count)]
    results = {}
    # onnxruntime's quantiser logs a warning on the root logger for every
    # 1-d weight it cannot quantise per channel (norm weights): noise here.
    root_logger = logging.getLogger()
    saved_level = root_logger.level
    root_logger.setLevel(logging.ERROR)
    try:
        _export_and_measure(model, size, tensor_mode, level, calibration,
                            float32, results)
    finally:
        root_logger.setLevel(saved_level)
    return results


def _export_and_measure(model: nn.Module, size: Tuple[int, int],
                        tensor_mode: bool, level: str,
                        calibration: List[np.ndarray], float32: bool,
                        results: Dict[str, DeployedMemory]) -> None:
    from .quantize import quantize_int8
    names = ('cls_scores', 'bbox_preds') if tensor_mode else ('feats', )
    with tempfile.TemporaryDirectory(prefix='sapool_deployed_') as tmp:
        if float32:
            path = osp.join(tmp, 'float32.onnx')
            export_module(model, path, size, tensor_mode=tensor_mode,
                          group_names=names)
            results['float32'] = deployed_memory(path, level=level)
        path = osp.join(tmp, 'int8.onnx')
        export_module(model, path, size, tensor_mode=tensor_mode,
                      group_names=names,
                      quantize=lambda data: quantize_int8(data, calibration))
        results['int8'] = deployed_memory(path, level=level,
                                          int8_device=True)
        results['int8_onnxruntime'] = deployed_memory(path, level=level)


def largest_fitting_size(model: nn.Module, input_size: Sequence[int],
                         budget_bytes: int, tensor_mode: bool = True,
                         level: str = DEFAULT_LEVEL, min_size: int = 64
                         ) -> Optional[Tuple[Tuple[int, int], int, bool]]:
    """The largest input, from ``input_size`` down in steps of 32 px
    (aspect kept), whose deployed int8 peak fits ``budget_bytes``.

    The size is chosen on the planner's estimate
    (:func:`~sapool_mmdet.deploy.budget.estimate_peak`, traced at no more
    than 160x160 and scaled with the input area), then measured on the
    exported int8 graph, one size smaller once if over budget.

    Returns:
        tuple | None: ((H, W), bytes, measured), or None if even the
        smallest size is over budget. ``measured`` is False when the graph
        could not be exported or quantised at that size and the bytes are
        the estimate there.
    """
    sizes = input_sizes(input_size, min_size)
    reference = reference_size(input_size)
    inputs = torch.randn(1, 3, *reference,
                         generator=torch.Generator().manual_seed(0))
    wrapped = FlatOutputs(model, tensor_mode)
    estimated = estimate_peak(model, inputs, lambda: wrapped(inputs))[0]
    area = reference[0] * reference[1]
    index = next((i for i, at in enumerate(sizes)
                  if estimated * at[0] * at[1] / area <= budget_bytes), None)
    if index is None:
        return None
    for at in sizes[index:index + 2]:
        try:
            peak = export_and_measure(model, at, tensor_mode, level,
                                      float32=False)['int8'].peak_bytes
        # onnxruntime's quantisation tools raise bare Exceptions (where
        # its symbolic shape inference gives up, quantize_int8 already
        # goes on without it): give the estimate at this size, marked as
        # such.
        except Exception:
            inputs = torch.randn(1, 3, *at,
                                 generator=torch.Generator().manual_seed(0))
            peak = estimate_peak(model, inputs, lambda: wrapped(inputs))[0]
            if peak <= budget_bytes:
                return at, peak, False
            continue
        if peak <= budget_bytes:
            return at, peak, True
    return None


def deployed_config_memory(config: str,
                           scope: str = 'detector',
                           input_size: Optional[Sequence[int]] = None,
                           cfg_options: Optional[dict] = None,
                           level: str = DEFAULT_LEVEL,
                           fit_kib: Sequence[float] = ()) -> DeployedReport:
    """Traced and deployed peaks of a config's detector (tensor mode) or
    backbone; see the module docstring. With ``fit_kib``, also the largest
    input that fits each budget (:func:`largest_fitting_size`).

    Raises:
        FileNotFoundError: if ``config`` does not exist.
        ValueError: for a budget that is not a positive number of KiB
            (before the config is read), a bad size or scope, or a model
            that cannot be exported.
    """
    for budget in fit_kib:
        check_budget_kib(budget)
    cfg = load_config(config, cfg_options)
    size = (check_input_size(list(input_size), cfg, repr(config))
            if input_size is not None else infer_input_size(cfg))
    model = build_from_config(cfg, scope)
    tensor_mode = scope == 'detector'
    inputs = torch.randn(1, 3, *size,
                         generator=torch.Generator().manual_seed(0))
    wrapped = FlatOutputs(model, tensor_mode)
    with torch.no_grad():
        trace = trace_activations(model, lambda: wrapped(inputs), [inputs])
    measured = export_and_measure(model, size, tensor_mode, level)
    int8 = measured['int8']
    fits = {}
    for budget in fit_kib:
        found = largest_fitting_size(model, size, int(budget * 1024),
                                     tensor_mode, level)
        fits[f'{budget:g}'] = (None if found is None else
                               [found[0][0], found[0][1], found[1],
                                found[2]])
    return DeployedReport(
        name=osp.basename(config), input_size=size,
        traced=trace.peak_bytes, traced_int8=trace.peak_bytes_int8,
        float32=measured['float32'].peak_bytes,
        int8_onnxruntime=measured['int8_onnxruntime'].peak_bytes,
        int8=int8.peak_bytes, int8_node=int8.peak_node,
        int8_input_share=int8.input_share, fits=fits)


def deployed_reports_table(reports: Sequence[DeployedReport],
                           markdown: bool = False) -> str:
    """The peaks in KiB, one row per model."""
    header = ['model', 'input', 'traced fp32', 'deployed fp32',
              'traced int8', 'deployed int8 (onnxruntime)',
              'deployed int8', 'input share', 'node at the int8 peak']

    def kib(value: Optional[int]) -> str:
        return '-' if value is None else f'{value / 1024:.0f}'

    budgets = list(dict.fromkeys(b for r in reports for b in r.fits))
    header += [f'largest input in {b} KiB (int8 peak)' for b in budgets]

    def fit(found: Optional[list]) -> str:
        if found is None:
            return 'none'
        measured = found[3] if len(found) > 3 else True
        return (f'{found[0]}x{found[1]} ({kib(found[2])}'
                f'{"" if measured else ", estimated"})')

    rows: List[List[str]] = [header]
    for r in reports:
        rows.append([r.name, f'{r.input_size[0]}x{r.input_size[1]}',
                     kib(r.traced), kib(r.float32), kib(r.traced_int8),
                     kib(r.int8_onnxruntime), kib(r.int8),
                     f'{100 * r.int8_input_share:.0f}%', r.int8_node] +
                    [fit(r.fits.get(b)) if b in r.fits else '-'
                     for b in budgets])
    if markdown:
        lines = ['| ' + ' | '.join(header) + ' |',
                 '|' + '|'.join([' --- ', ' --- '] + [' ---: '] * 6 +
                                [' --- '] + [' --- '] * len(budgets)) +
                 '|']
        lines += ['| ' + ' | '.join(row) + ' |' for row in rows[1:]]
        return '\n'.join(lines) + '\n'
    from terminaltables import AsciiTable
    return AsciiTable(rows, 'peak activation memory (KiB)').table + '\n'
