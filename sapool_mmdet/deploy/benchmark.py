"""The deployment benchmark (``tools/benchmark_deploy.py``): for each trained
detector, its file sizes, PyTorch / onnxruntime float32 / onnxruntime int8
latency and mAP@0.5, and the int8 peak activation memory of
:func:`~sapool_mmdet.analysis.analyze_config`."""
import io
import json
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.runner import Runner
from terminaltables import AsciiTable

from ..analysis import analyze_config, build_from_config, load_config
from ..analysis.latency import check_run_times, check_threads, measure_latency
from ..fileio import atomic_open
from .export import INPUT_NAME, FlatOutputs, load_weights, export_onnx
from .memory import deployed_memory
from .quantize import load_calibration_inputs
from .runtime import create_session, evaluate_onnx

__all__ = ['RUNTIMES', 'DeployBenchmark', 'benchmark_deploy',
           'benchmark_rows', 'benchmark_markdown', 'benchmark_text',
           'write_benchmark']

RUNTIMES = ('pytorch', 'onnx_fp32', 'onnx_int8')
_HEADINGS = {'pytorch': 'PyTorch', 'onnx_fp32': 'ONNX fp32',
             'onnx_int8': 'ONNX int8'}


@dataclass
class DeployBenchmark:
    """One detector in the three runtimes.

    Attributes:
        name (str): Row label.
        config (str): Config file.
        checkpoint (str): Checkpoint file.
        input_size (tuple[int, int]): (H, W) of the exported model.
        model_bytes (dict[str, int]): PyTorch state dict (``torch.save``
            of the detector's weights), ONNX float32 and int8 file sizes.
        latency_ms (dict[str, float]): Median batch-1 forward time (raw
            head outputs, no decoding or NMS) per runtime.
        latency_iqr_ms (dict[str, float]): Interquartile range of the
            timed blocks per runtime (see
            :func:`~sapool_mmdet.analysis.measure_latency`).
        map50 (dict[str, float]): mAP@0.5 (%) of the config's evaluator on
            its test set per runtime.
        map (dict[str, float]): mAP@[0.5,0.95] (%) per runtime.
        max_abs_diff (float): Float32 export against PyTorch (random input).
        int8_correlation (dict[str, float]): int8 outputs against float32
            on the first calibration image.
        peak_activation_bytes (int): Float32 peak activation memory of the
            detector's tensor-mode forward (``tools/analyze_model.py
            --scope detector``).
        peak_activation_bytes_int8 (int): The same at one byte per element.
        deployed_peak_bytes (dict[str, int]): Peak of the deployed graphs
            (:func:`~sapool_mmdet.deploy.memory.deployed_memory`, input
            included): 'onnx_fp32', 'onnx_int8' (as onnxruntime runs it)
            and 'int8_device' (every activation int8).
        threads (int): Intra-op threads of PyTorch and onnxruntime.
        files (dict[str, str]): The ONNX files and metric reports written.
    """
    name: str
    config: str
    checkpoint: str
    input_size: Tuple[int, int]
    model_bytes: Dict[str, int] = field(default_factory=dict)
    latency_ms: Dict[str, float] = field(default_factory=dict)
    latency_iqr_ms: Dict[str, float] = field(default_factory=dict)
    map50: Dict[str, float] = field(default_factory=dict)
    map: Dict[str, float] = field(default_factory=dict)
    max_abs_diff: float = 0.0
    int8_correlation: Dict[str, float] = field(default_factory=dict)
    peak_activation_bytes: int = 0
    peak_activation_bytes_int8: int = 0
    deployed_peak_bytes: Dict[str, int] = field(default_factory=dict)
    threads: int = 1
    files: Dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _evaluate_pytorch(config: str, checkpoint: str, work_dir: str,
                      cfg_options: Optional[dict]) -> dict:
    cfg = load_config(config, cfg_options)
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.resume = False
    return Runner.from_cfg(cfg).test()


def _percent(metrics: dict, key: str) -> float:
    return round(100 * float(metrics[f'coco/{key}']), 1)


def benchmark_deploy(models: Sequence[Tuple[str, str, str]],
                     out_dir: str,
                     calib_images: str,
                     calib_count: int = 100,
                     min_run_time: float = 0.5,
                     max_run_time: float = 5.0,
                     threads: int = 1,
                     cfg_options: Optional[dict] = None,
                     evaluate: bool = True) -> List[DeployBenchmark]:
    """Export, quantise, time and evaluate each detector.

    For each ``(name, config, checkpoint)``: export the detector to
    ``<out_dir>/<name>/fp32.onnx`` (parity-checked) and
    ``int8.onnx`` (calibrated on ``calib_count`` images of
    ``calib_images``); time batch-1 forwards on the first calibration
    image in PyTorch and in onnxruntime; evaluate all three with the
    config's test dataloader and evaluator (reports in
    ``<out_dir>/<name>/<runtime>/driving_metrics.{json,md}``); measure the
    peak activation memory of the detector.

    Args:
        models (Sequence[tuple[str, str, str]]): Name, config, checkpoint.
        out_dir (str): Folder for the ONNX files and reports (created).
        calib_images (str): Calibration image folder.
        calib_count (int): Calibration images. Default: 100.
        min_run_time (float): Seconds each latency is timed at least
            (:func:`~sapool_mmdet.analysis.measure_latency`). Default: 0.5.
        max_run_time (float): Seconds after which timing stops however
            large the spread. Default: 5.0.
        threads (int): Intra-op threads for PyTorch and onnxruntime.
            Default: 1.
        cfg_options (dict, optional): Config overrides for every model.
        evaluate (bool): Evaluate the three runtimes on the test set; False
            measures only what does not depend on the weights' quality
            (sizes, latency, memory). Default: True.

    Returns:
        list[DeployBenchmark]: One per model.

    Raises:
        ValueError: on bad timing arguments or thread count, before
            anything is exported.
        FileNotFoundError: a missing config, checkpoint or calibration
            folder, before anything is written.
    """
    check_run_times(min_run_time, max_run_time)
    check_threads(threads)
    # every file before the first model's folder is made
    for _, config, checkpoint in models:
        for path, what in ((config, 'config file'),
                           (checkpoint, 'checkpoint file')):
            if not osp.isfile(path):
                raise FileNotFoundError(f'{what} {path!r} not found')
    if not osp.isdir(calib_images):
        raise FileNotFoundError(
            f'calibration image folder {calib_images!r} not found')
    results = []
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, config, checkpoint in models:
            results.append(
                _benchmark_one(name, config, checkpoint, out_dir,
                               calib_images, calib_count, min_run_time,
                               max_run_time, threads, cfg_options, evaluate))
    finally:
        torch.set_num_threads(saved_threads)
    return results


def _benchmark_one(name: str, config: str, checkpoint: str, out_dir: str,
                   calib_images: str, calib_count: int, min_run_time: float,
                   max_run_time: float, threads: int,
                   cfg_options: Optional[dict],
                   evaluate: bool) -> DeployBenchmark:
    folder = osp.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    paths = {runtime: osp.join(folder, f'{runtime[5:]}.onnx')
             for runtime in RUNTIMES[1:]}
    print(f'[{name}] exporting float32 and int8 ONNX models')
    fp32 = export_onnx(config, checkpoint, paths['onnx_fp32'], verify=True,
                       cfg_options=cfg_options)
    int8 = export_onnx(config, checkpoint, paths['onnx_int8'], int8=True,
                       calib_images=calib_images, calib_count=calib_count,
                       cfg_options=cfg_options)
    result = DeployBenchmark(
        name=name, config=config, checkpoint=checkpoint,
        input_size=fp32.input_size, max_abs_diff=fp32.max_abs_diff,
        int8_correlation=int8.int8_correlation, threads=threads,
        files=dict(paths))

    cfg = load_config(config, cfg_options)
    detector = build_from_config(cfg, 'detector')
    load_weights(detector, checkpoint, config)
    buffer = io.BytesIO()
    torch.save(detector.state_dict(), buffer)
    result.model_bytes = dict(pytorch=len(buffer.getvalue()),
                              onnx_fp32=fp32.num_bytes,
                              onnx_int8=int8.num_bytes)

    print(f'[{name}] timing batch-1 forwards ({min_run_time}-{max_run_time} '
          f's per runtime, {threads} thread(s))')
    image = load_calibration_inputs(cfg, calib_images, 1, fp32.input_size)[0]
    wrapped = FlatOutputs(detector, tensor_mode=True).eval()
    inputs = torch.from_numpy(image)

    def torch_forward():
        with torch.no_grad():
            wrapped(inputs)

    forwards = {'pytorch': torch_forward}
    for runtime, path in paths.items():
        session = create_session(path, threads)
        forwards[runtime] = (lambda session=session: session.run(
            None, {INPUT_NAME: image}))
    for runtime, forward in forwards.items():
        latency = measure_latency(forward, min_run_time, max_run_time,
                                  threads)
        result.latency_ms[runtime] = latency.median_ms
        result.latency_iqr_ms[runtime] = latency.iqr_ms

    stamp = time.strftime('%Y%m%d_%H%M%S')
    for runtime in RUNTIMES if evaluate else ():
        print(f'[{name}] evaluating {_HEADINGS[runtime]}')
        work_dir = osp.join(folder, runtime)
        options = dict(cfg_options or {},
                       experiment_name=f'{name}_{runtime}_{stamp}')
        if runtime == 'pytorch':
            metrics = _evaluate_pytorch(config, checkpoint, work_dir,
                                        options)
        else:
            metrics = evaluate_onnx(config, paths[runtime], work_dir,
                                    options, threads)
        result.map50[runtime] = _percent(metrics, 'bbox_mAP_50')
        result.map[runtime] = _percent(metrics, 'bbox_mAP')
        result.files[f'{runtime}_report'] = osp.join(work_dir,
                                                     'driving_metrics.json')

    # Only the activation accounting is used: time it as briefly as the
    # timer allows.
    report = analyze_config(config, scope='detector', min_run_time=0,
                            max_run_time=1e-3, threads=threads,
                            cfg_options=cfg_options)
    result.peak_activation_bytes = report.peak_activation_bytes
    result.peak_activation_bytes_int8 = report.peak_activation_bytes_int8
    result.deployed_peak_bytes = dict(
        onnx_fp32=deployed_memory(paths['onnx_fp32']).peak_bytes,
        onnx_int8=deployed_memory(paths['onnx_int8']).peak_bytes,
        int8_device=deployed_memory(paths['onnx_int8'],
                                    int8_device=True).peak_bytes)
    return result


def _mib(nbytes: float) -> str:
    return f'{nbytes / 2**20:.2f}'


def _map_text(values: Dict[str, float], runtime: str) -> str:
    return f'{values[runtime]:.1f}' if runtime in values else '-'


def benchmark_rows(results: Sequence[DeployBenchmark]) -> List[List[str]]:
    """The table: one row per model and runtime."""
    rows = [['model', 'runtime', 'file (MiB)', 'latency (ms)', 'IQR (ms)',
             'mAP@0.5', 'mAP@[.5,.95]', 'peak act. (MiB)',
             'deployed peak (MiB)']]
    for result in results:
        for runtime in RUNTIMES:
            peak = (result.peak_activation_bytes_int8
                    if runtime == 'onnx_int8' else
                    result.peak_activation_bytes)
            rows.append([
                result.name, _HEADINGS[runtime],
                _mib(result.model_bytes[runtime]),
                f'{result.latency_ms[runtime]:.1f}',
                f'{result.latency_iqr_ms[runtime]:.1f}',
                _map_text(result.map50, runtime),
                _map_text(result.map, runtime), _mib(peak),
                _mib(result.deployed_peak_bytes[runtime])
                if runtime in result.deployed_peak_bytes else '-'
            ])
    return rows


def _notes(results: Sequence[DeployBenchmark]) -> str:
    lines = []
    for result in results:
        height, width = result.input_size
        lines.append(
            f'{result.name}: input {height}x{width}, float32 export within '
            f'{result.max_abs_diff:.2g} of PyTorch, lowest int8/float32 '
            f'output correlation '
            f'{min(result.int8_correlation.values()):.4f}; latency = median '
            f'batch-1 forward with {result.threads} thread(s), raw head '
            f'outputs (decoding and NMS excluded); PyTorch file = its state '
            f'dict; peak activations: fp32 rows float32, int8 row one byte '
            f'per element; deployed peak: the graph onnxruntime runs, input '
            f'included (int8 with every activation int8: '
            f'{_mib(result.deployed_peak_bytes.get("int8_device", 0))} '
            f'MiB).')
    return '\n'.join(lines)


def benchmark_markdown(results: Sequence[DeployBenchmark]) -> str:
    """The table as Markdown, with what each column measures."""
    rows = benchmark_rows(results)
    lines = ['| ' + ' | '.join(rows[0]) + ' |',
             '|' + '|'.join([' --- ', ' --- '] + [' ---: '] *
                            (len(rows[0]) - 2)) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows[1:]]
    return '\n'.join(lines) + '\n\n' + _notes(results) + '\n'


def benchmark_text(results: Sequence[DeployBenchmark]) -> str:
    """The table for the terminal."""
    return AsciiTable(benchmark_rows(results),
                      'deployment').table + '\n' + _notes(results) + '\n'


def write_benchmark(results: Sequence[DeployBenchmark],
                    json_path: Optional[str] = None,
                    markdown_path: Optional[str] = None) -> None:
    """Write the results as JSON and/or Markdown, atomically."""
    if json_path:
        with atomic_open(json_path, 'w', encoding='utf-8') as f:
            json.dump([r.as_dict() for r in results], f, indent=2)
            f.write('\n')
    if markdown_path:
        with atomic_open(markdown_path, 'w', encoding='utf-8') as f:
            f.write(benchmark_markdown(results))
