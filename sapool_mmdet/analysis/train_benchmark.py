"""What one training step of a detector costs: step time, images/s and peak
memory, as mmengine's runner trains it (``tools/benchmark_train.py``).

For each config the detector is built from the config (mmdet's registry,
SyncBN reverted to BN) and initialised as the runner does
(``init_weights``), except that no checkpoint is loaded: ``Pretrained``
initialisers are dropped, so those modules keep their own default
initialisation. It runs on the device, in train mode, with the config's
data preprocessor. Its optimizer wrapper is the config's ``optim_wrapper``
(optimizer, parameter-wise settings, gradient clipping) built by
mmengine's ``build_optim_wrapper``, with the precision set by ``amp``:

- ``'none'``: ``OptimWrapper``, float32;
- ``'fp16'``: ``AmpOptimWrapper`` with ``loss_scale='dynamic'``, what
  mmdet's ``tools/train.py --amp`` gives (float16 autocast around the
  forward, dynamic loss scaling); CUDA only, as ``AmpOptimWrapper`` is;
- ``'bf16'``: on CUDA ``AmpOptimWrapper(dtype='bfloat16')``; on the CPU,
  where ``AmpOptimWrapper`` refuses to run, an ``OptimWrapper`` that opens
  ``torch.autocast('cpu', dtype=torch.bfloat16)`` around the same forward
  (no loss scaling: bfloat16 has float32's exponent range).

``model.train_step(batch, optim_wrapper)`` is then called as the runner's
train loop calls it (data preprocessor, loss forward, backward, optimizer
step, zero_grad) on one synthetic batch: ``batch_size`` random uint8 images
of ``input_size`` with one to six boxes each (sides 5 to 50 % of the image,
labels uniform over the model's classes), packed by mmdet's
``PackDetInputs`` and collated by mmengine's ``pseudo_collate`` as a
dataloader would. ``warmup`` steps run untimed (the first creates the
optimizer state), then ``steps`` steps are timed one by one, the device
synchronised around each.

Reported per config (:class:`TrainBenchmark`): the median step time and the
interquartile range of the steps, images/s (batch size / median step
time); peak memory and the part of it beyond the model state (parameters,
buffers, one gradient per trainable parameter and the optimizer state,
all after warm-up): on CUDA ``torch.cuda.max_memory_allocated`` over the
timed steps, on the CPU the live-tensor accounting of
:mod:`sapool_mmdet.analysis.memory` over one more step (every tensor freed
after its last use) plus the parameters and buffers it leaves out; whether
the loss stayed finite in every step; and, in eval mode, the latency of
``model.test_step`` (preprocessing, forward, box decoding and NMS) at
batch 1 and its throughput at ``throughput_batch`` images, timed with
:func:`~.latency.measure_latency`. Inference runs in float32 whatever
``amp`` is, as mmengine's ValLoop and TestLoop do unless their ``fp16``
is set (mmcv's compiled NMS takes no bfloat16 boxes).
"""
import copy
import gc
import json
import logging
import math
import os
import os.path as osp
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmdet.datasets.transforms import PackDetInputs
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper, build_optim_wrapper
from terminaltables import AsciiTable, GithubFlavoredMarkdownTable

from ..fileio import atomic_open
from .config import (build_from_config, check_device, check_input_size,
                     infer_input_size, load_config)
from .latency import (Latency, check_run_times, check_threads,
                      measure_latency)
from .memory import iter_tensors, trace_activations
from .report import MIB, _with_ratio, config_label, mib, write_text_file

__all__ = ['AMP_MODES', 'TrainBenchmark', 'synthetic_batch',
           'model_num_classes', 'build_train_optim_wrapper',
           'benchmark_train_config', 'benchmark_train', 'train_rows',
           'train_text', 'train_markdown', 'write_train_json',
           'write_train_markdown', 'plot_train_benchmark']

AMP_MODES = ('none', 'fp16', 'bf16')


@dataclass
class TrainBenchmark:
    """The measurements of one config; see the module docstring.

    Attributes:
        config (str): The config file.
        device (str): 'cpu' or 'cuda'.
        device_name (str): The GPU's name, or the CPU's.
        torch_version (str): ``torch.__version__`` (and CUDA's version).
        amp (str): 'none', 'fp16' or 'bf16'.
        batch_size (int): Images per training step.
        input_size (tuple): (H, W) of the images.
        warmup (int): Untimed steps before the timed ones.
        steps (int): Timed steps.
        threads (int): Intra-op threads (``torch.get_num_threads``).
        params (int): Parameters of the detector.
        step_ms (float): Median time of one training step, in ms.
        step_iqr_ms (float): Interquartile range of the step times, in ms.
        images_per_s (float): ``batch_size`` / median step time.
        peak_bytes (int): Peak memory of a training step, in bytes.
        state_bytes (int): Parameters, buffers, gradients and optimizer
            state after the timed steps, in bytes.
        memory_source (str): 'cuda allocator' or 'trace' (the live-tensor
            accounting of :mod:`~.memory`).
        loss_finite (bool): Every step's loss was finite.
        losses (list[float]): The loss of every step, warm-up first.
        latency_ms (float): Median ``test_step`` time at batch 1, in ms.
        latency_iqr_ms (float): Its interquartile range, in ms.
        throughput_batch (int): Batch size of the throughput measurement.
        throughput_ms (float): Median ``test_step`` time at that batch.
        throughput_images_per_s (float): ``throughput_batch`` /
            ``throughput_ms``, in images/s.
        cfg_options (dict): Overrides merged into the config.
    """
    config: str
    device: str
    device_name: str
    torch_version: str
    amp: str
    batch_size: int
    input_size: Tuple[int, int]
    warmup: int
    steps: int
    threads: int
    params: int
    step_ms: float
    step_iqr_ms: float
    images_per_s: float
    peak_bytes: int
    state_bytes: int
    memory_source: str
    loss_finite: bool
    losses: List[float]
    latency_ms: Optional[float] = None
    latency_iqr_ms: Optional[float] = None
    throughput_batch: int = 0
    throughput_ms: Optional[float] = None
    throughput_images_per_s: Optional[float] = None
    cfg_options: Dict[str, object] = field(default_factory=dict)

    @property
    def peak_beyond_state_bytes(self) -> int:
        """Peak memory minus the model state: what the step's
        activations, the input batch and temporaries took at the peak."""
        return self.peak_bytes - self.state_bytes

    def as_dict(self) -> dict:
        record = asdict(self)
        record['peak_beyond_state_bytes'] = self.peak_beyond_state_bytes
        return record


def model_num_classes(model_cfg: dict) -> int:
    """The number of object classes a detector config predicts: the
    ``num_classes`` of its heads (all that give one must agree).

    Raises:
        ValueError: if no head gives ``num_classes`` or two disagree.
    """
    found = set()

    def visit(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get('num_classes'), int):
                found.add(node['num_classes'])
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(model_cfg)
    if len(found) != 1 or min(found) < 1:
        problem = ('no num_classes' if not found else
                   f'num_classes values {sorted(found)}')
        raise ValueError(f'cannot tell how many classes the model predicts: '
                         f'its config has {problem}; the synthetic boxes '
                         f'need one positive number of classes')
    return found.pop()


def synthetic_batch(batch_size: int, input_size: Sequence[int],
                    num_classes: int, seed: int = 0) -> dict:
    """A batch as a detection dataloader delivers it, with random content.

    Each image is random uint8 BGR pixels of ``input_size`` with one to six
    boxes whose sides are 5 to 50 % of the image's (at least 2 px) and whose
    labels are uniform in ``[0, num_classes)``; it is packed by mmdet's
    ``PackDetInputs`` (the last transform of every detection pipeline) and
    the batch collated by mmengine's ``pseudo_collate``, the dataloaders'
    default.

    Args:
        batch_size (int): Images in the batch (>= 1).
        input_size (sequence of int): (H, W), as the pipeline resized them.
        num_classes (int): Labels are drawn from ``range(num_classes)``.
        seed (int): Seed of the random content. Default: 0.

    Returns:
        dict: ``inputs`` (list of (3, H, W) uint8 tensors) and
        ``data_samples`` (list of ``DetDataSample`` with ``gt_instances``
        and the image meta information).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size,
                                                      int) or batch_size < 1:
        raise ValueError(f'batch size must be an integer >= 1, got '
                         f'{batch_size!r}')
    height, width = check_input_size(input_size)
    rng = np.random.default_rng(seed)
    pack = PackDetInputs()
    items = []
    for index in range(batch_size):
        count = int(rng.integers(1, 7))
        sides = rng.uniform(0.05, 0.5, size=(count, 2)) * (width, height)
        sides = np.maximum(sides, 2.0)
        corners = rng.uniform(0.0, 1.0, size=(count, 2)) * np.maximum(
            (width, height) - sides, 0.0)
        boxes = np.concatenate([corners, corners + sides], axis=1)
        items.append(pack.transform(dict(
            img=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
            gt_bboxes=HorizontalBoxes(boxes.astype(np.float32)),
            gt_bboxes_labels=rng.integers(0, num_classes, count),
            gt_ignore_flags=np.zeros(count, dtype=bool),
            img_id=index,
            img_path=f'synthetic_{index}.jpg',
            ori_shape=(height, width),
            img_shape=(height, width),
            scale_factor=(1.0, 1.0),
            flip=False,
            flip_direction=None)))
    return pseudo_collate(items)


class _CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward context autocasts to ``dtype`` on the
    CPU: ``AmpOptimWrapper``'s autocast, which mmengine allows only on
    accelerators, without its loss scaler."""

    def __init__(self, dtype: torch.dtype, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield


def _check_amp(amp: str, device: torch.device) -> None:
    if amp not in AMP_MODES:
        raise ValueError(f'amp must be one of {AMP_MODES}, got {amp!r}')
    if amp == 'fp16' and device.type != 'cuda':
        raise ValueError(
            'amp fp16 trains with mmengine\'s AmpOptimWrapper (float16 with '
            'dynamic loss scaling), which needs a CUDA device; on the CPU use '
            'amp bf16 or none')
    if (amp == 'bf16' and device.type == 'cuda'
            and not torch.cuda.is_bf16_supported()):
        raise ValueError(f'amp bf16: {torch.cuda.get_device_name(device)} '
                         f'does not support bfloat16; use amp fp16 or none')


def build_train_optim_wrapper(model: nn.Module, optim_wrapper_cfg: dict,
                              amp: str = 'none',
                              device: str = 'cpu') -> OptimWrapper:
    """The config's optimizer wrapper for ``model``, in the precision of
    ``amp`` (see the module docstring).

    Args:
        model (nn.Module): The detector, already on ``device``.
        optim_wrapper_cfg (dict): The config's ``optim_wrapper``.
        amp (str): 'none', 'fp16' or 'bf16'. Default: 'none'.
        device (str): Where the model trains. Default: 'cpu'.

    Raises:
        ValueError: unknown ``amp``; 'fp16' off CUDA; 'bf16' on a GPU
            without bfloat16.
    """
    dev = torch.device(device)
    _check_amp(amp, dev)
    cfg = copy.deepcopy(dict(optim_wrapper_cfg))
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        cfg.pop(key, None)
    if amp == 'none' or dev.type == 'cpu':
        cfg['type'] = 'OptimWrapper'
    else:
        cfg.update(type='AmpOptimWrapper', loss_scale='dynamic')
        if amp == 'bf16':
            cfg['dtype'] = 'bfloat16'
    wrapper = build_optim_wrapper(model, cfg)
    if amp == 'bf16' and dev.type == 'cpu':
        wrapper = _CPUAutocastOptimWrapper(
            torch.bfloat16, optimizer=wrapper.optimizer,
            accumulative_counts=cfg.get('accumulative_counts', 1),
            clip_grad=cfg.get('clip_grad'))
    return wrapper


def _state_bytes(model: nn.Module, optim_wrapper: OptimWrapper) -> int:
    """Parameters, buffers, one gradient per trainable parameter and the
    optimizer's state tensors."""
    nbytes = sum(t.numel() * t.element_size()
                 for t in list(model.parameters()) + list(model.buffers()))
    nbytes += sum(p.numel() * p.element_size() for p in model.parameters()
                  if p.requires_grad)
    return nbytes + sum(
        t.numel() * t.element_size()
        for t in iter_tensors(list(optim_wrapper.optimizer.state.values())))


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or 'cpu'


def _torch_version() -> str:
    cuda = torch.version.cuda
    return f'{torch.__version__}' + (f' (CUDA {cuda})' if cuda else '')


def _percentile_spread(values: Sequence[float]) -> float:
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 - q1)


@contextmanager
def _num_threads(threads: int) -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _loss(log_vars: dict) -> float:
    return float(log_vars['loss'].detach())


def _inference_latency(model: nn.Module, data: dict, min_run_time: float,
                       max_run_time: float, threads: int) -> Latency:
    """``model.test_step(data)`` without autograd, as the test loop runs
    it, timed by :func:`~.latency.measure_latency`."""

    def predict():
        with torch.no_grad():
            return model.test_step(data)

    return measure_latency(predict, min_run_time, max_run_time, threads)


def _trace_step_peak(model: nn.Module, batch: dict,
                     optim_wrapper: OptimWrapper) -> Tuple[int, float]:
    """Peak of one traced training step (parameters and buffers included)
    and its loss."""
    state = list(iter_tensors(list(optim_wrapper.optimizer.state.values())))
    log_vars = {}

    def step():
        log_vars.update(model.train_step(batch, optim_wrapper))

    trace = trace_activations(model, step,
                              inputs=list(batch['inputs']) + state,
                              keep=lambda: state)
    static = sum(t.numel() * t.element_size()
                 for t in list(model.parameters()) + list(model.buffers()))
    return trace.peak_bytes + static, _loss(log_vars)


def benchmark_train_config(path: str,
                           batch_size: Optional[int] = None,
                           input_size: Optional[Sequence[int]] = None,
                           steps: int = 10,
                           warmup: int = 2,
                           amp: str = 'none',
                           device: str = 'cpu',
                           throughput_batch: int = 32,
                           inference: bool = True,
                           min_run_time: float = 0.5,
                           max_run_time: float = 5.0,
                           threads: Optional[int] = None,
                           cfg_options: Optional[dict] = None,
                           log: Callable[[str], None] = lambda line: None
                           ) -> TrainBenchmark:
    """Measure the training step (and inference) of one config.

    Args:
        path (str): mmdet config file.
        batch_size (int, optional): Images per step; by default the
            config's ``train_dataloader.batch_size``.
        input_size (sequence of int, optional): (H, W); by default the
            config's test-pipeline size (:func:`~.config.infer_input_size`).
        steps (int): Timed training steps (>= 1). Default: 10.
        warmup (int): Untimed steps before them (>= 1: the first step
            creates the optimizer state). Default: 2.
        amp (str): 'none', 'fp16' or 'bf16'. Default: 'none'.
        device (str): 'cpu' or 'cuda[:N]'. Default: 'cpu'.
        throughput_batch (int): Batch of the inference throughput.
            Default: 32.
        inference (bool): Also time inference. Default: True.
        min_run_time, max_run_time (float), threads (int, optional): How to
            time inference (:func:`~.latency.measure_latency`); ``threads``
            also applies to the training steps.
        cfg_options (dict, optional): Overrides merged into the config, as
            mmdet's ``--cfg-options``.
        log (callable): Receives one progress line at each phase.

    Returns:
        TrainBenchmark

    Raises:
        FileNotFoundError: the config file is missing.
        ValueError: a bad argument (see :func:`benchmark_train`).
    """
    dev = check_device(device)
    _check_amp(amp, dev)
    threads = check_threads(threads)
    cfg = load_config(path, cfg_options)
    _check_train_config(cfg, path)
    size = (check_input_size(input_size, cfg, repr(path))
            if input_size is not None else infer_input_size(cfg))
    batch_size = (cfg.train_dataloader.batch_size if batch_size is None else
                  batch_size)
    batch = synthetic_batch(batch_size, size, model_num_classes(cfg.model))
    with _num_threads(threads):
        model = _build_initialised(cfg).to(dev)
        model.train()
        optim_wrapper = build_train_optim_wrapper(model, cfg.optim_wrapper,
                                                  amp, str(dev))
        log(f'warm-up: {warmup} step(s) of {batch_size} image(s) of '
            f'{size[0]}x{size[1]}')
        try:
            losses = [_loss(model.train_step(batch, optim_wrapper))
                      for _ in range(warmup)]
        except ValueError as error:
            # torch's words for a training-mode batch norm over one value
            if 'more than 1 value per channel' not in str(error):
                raise
            raise ValueError(
                f'{path}: a training step of {batch_size} image(s) of '
                f'{size[0]}x{size[1]} reaches a map of one value per '
                f'channel (1x1, one image), which batch norm cannot '
                f'normalise in training; use --batch-size 2 or more '
                f'({error})') from None
        if dev.type == 'cuda':
            _synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        log(f'timing {steps} step(s)')
        times = []
        for _ in range(steps):
            _synchronize(dev)
            begin = time.perf_counter()
            log_vars = model.train_step(batch, optim_wrapper)
            _synchronize(dev)
            times.append(time.perf_counter() - begin)
            losses.append(_loss(log_vars))
        # After the timed steps: float16's dynamic loss scale skips the
        # optimizer step (and the creation of its state) while gradients
        # overflow, which can last through the warm-up.
        state_bytes = _state_bytes(model, optim_wrapper)
        if dev.type == 'cuda':
            peak_bytes = torch.cuda.max_memory_allocated(dev)
            source = 'cuda allocator'
        else:
            log('tracing the live tensors of one more step')
            peak_bytes, loss = _trace_step_peak(model, batch, optim_wrapper)
            losses.append(loss)
            source = 'trace'
    step_s = statistics.median(times)
    result = TrainBenchmark(
        config=path, device=dev.type, device_name=_device_name(dev),
        torch_version=_torch_version(), amp=amp, batch_size=batch_size,
        input_size=size, warmup=warmup, steps=steps, threads=threads,
        params=sum(p.numel() for p in model.parameters()),
        step_ms=step_s * 1e3, step_iqr_ms=_percentile_spread(times) * 1e3,
        images_per_s=batch_size / step_s, peak_bytes=peak_bytes,
        state_bytes=state_bytes, memory_source=source,
        loss_finite=all(math.isfinite(v) for v in losses), losses=losses,
        throughput_batch=throughput_batch if inference else 0,
        cfg_options=dict(cfg_options or {}))
    del optim_wrapper
    if inference:
        model.eval()
        num_classes = model_num_classes(cfg.model)
        for batch_images in (1, throughput_batch):
            log(f'inference at batch {batch_images}')
            latency = _inference_latency(
                model, synthetic_batch(batch_images, size, num_classes,
                                       seed=1), min_run_time, max_run_time,
                threads)
            if batch_images == 1:
                result.latency_ms = latency.median_ms
                result.latency_iqr_ms = latency.iqr_ms
            else:
                result.throughput_ms = latency.median_ms
                result.throughput_images_per_s = (
                    batch_images / latency.median_ms * 1e3)
    del model
    gc.collect()
    if dev.type == 'cuda':
        torch.cuda.empty_cache()
    return result


def _without_checkpoints(node):
    """A copy of a model config with every ``Pretrained`` initialisation
    (and the old ``pretrained=`` argument) removed."""
    if isinstance(node, (list, tuple)):
        return type(node)(_without_checkpoints(item) for item in node)
    if not isinstance(node, dict):
        return node
    cleaned = {}
    for key, value in node.items():
        if key == 'init_cfg':
            inits = value if isinstance(value, (list, tuple)) else [value]
            kept = [init for init in inits if not (
                isinstance(init, dict) and init.get('type') == 'Pretrained')]
            value = (kept if isinstance(value, (list, tuple)) else
                     (kept[0] if kept else None)) or None
        elif key == 'pretrained' and isinstance(value, str):
            value = None
        cleaned[key] = _without_checkpoints(value)
    return cleaned


def _build_initialised(cfg: Config) -> nn.Module:
    """The detector of ``cfg`` with the weights the runner would give it
    (``init_weights`` with the config's initialisers), except that nothing
    is loaded: ``Pretrained`` initialisers are dropped, so the modules'
    own defaults apply there. Seeded, so every run starts from the same
    weights; mmengine's per-parameter initialisation report is not
    logged."""
    cfg = copy.deepcopy(cfg)
    cfg.model = _without_checkpoints(cfg.model.to_dict())
    torch.manual_seed(0)
    model = build_from_config(cfg, 'detector')
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def _check_train_config(cfg: Config, path: str) -> None:
    missing = [key for key in ('model', 'optim_wrapper') if key not in cfg]
    if missing:
        raise ValueError(f'{path} is not a training config: it has no '
                         f'{" and no ".join(missing)}')


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (
            value < minimum):
        raise ValueError(f'{name} must be an integer >= {minimum}, got '
                         f'{value!r}')


def benchmark_train(paths: Sequence[str],
                    batch_size: Optional[int] = None,
                    input_size: Optional[Sequence[int]] = None,
                    steps: int = 10,
                    warmup: int = 2,
                    amp: str = 'none',
                    device: str = 'cpu',
                    throughput_batch: int = 32,
                    inference: bool = True,
                    min_run_time: float = 0.5,
                    max_run_time: float = 5.0,
                    threads: Optional[int] = None,
                    cfg_options: Optional[dict] = None,
                    progress: bool = True) -> List[TrainBenchmark]:
    """:func:`benchmark_train_config` for each config, in order, with
    progress lines on stderr.

    Every argument and every config file is checked before the first model
    is built; the arguments are those of :func:`benchmark_train_config`.

    Raises:
        FileNotFoundError: a config file is missing.
        ValueError: no config; ``steps``, ``warmup``, ``batch_size`` or
            ``throughput_batch`` below 1; an unknown ``amp`` or one the
            device cannot run (fp16 needs CUDA); a device other than cpu
            or an available cuda; bad input size, run times or threads.
    """
    paths = list(paths)
    if not paths:
        raise ValueError('no config given')
    missing = [path for path in paths if not isinstance(path, str)
               or not osp.isfile(path)]
    if missing:
        raise FileNotFoundError(f'config file(s) not found: {missing}')
    _check_count('steps', steps)
    _check_count('warmup', warmup)
    _check_count('throughput batch', throughput_batch)
    if batch_size is not None:
        _check_count('batch size', batch_size)
    if input_size is not None:
        check_input_size(input_size)
        # the size each config's data preprocessor lets through, checked
        # for all of them before the first is benchmarked
        for path in paths:
            check_input_size(input_size, load_config(path, cfg_options),
                             repr(path))
    _check_amp(amp, check_device(device))
    check_run_times(min_run_time, max_run_time)
    check_threads(threads)
    results = []
    for index, path in enumerate(paths, 1):
        prefix = f'[benchmark_train {index}/{len(paths)}] {path}'

        def log(line: str, prefix: str = prefix) -> None:
            if progress:
                print(f'{prefix}: {line}', file=sys.stderr, flush=True)

        log(f'building (device {device}, amp {amp})')
        result = benchmark_train_config(
            path, batch_size, input_size, steps, warmup, amp, device,
            throughput_batch, inference, min_run_time, max_run_time, threads,
            cfg_options, log)
        log(f'{result.step_ms:.1f} ms/step, {result.images_per_s:.2f} '
            f'images/s, peak {mib(result.peak_bytes)} MiB '
            f'({result.memory_source}), loss '
            f'{"finite" if result.loss_finite else "NOT finite"}')
        results.append(result)
    return results


def train_rows(results: Sequence[TrainBenchmark]) -> List[List[str]]:
    """Header and one row per config; with several, every measured value
    is followed by its ratio to the first config's."""
    ref = results[0] if len(results) > 1 else None
    rows = [['config', 'device', 'amp', 'batch', 'input HxW', 'step (ms)',
             'IQR (ms)', 'images/s', 'peak (MiB)', 'beyond state (MiB)',
             'loss finite', 'latency b1 (ms)', 'infer. batch',
             'infer. images/s']]
    for result in results:

        def cell(attribute: str, text: Callable[[float], str]) -> str:
            value = getattr(result, attribute)
            if value is None:
                return '-'
            first = None if ref is None else getattr(ref, attribute)
            return _with_ratio(text(value), value, first)

        rows.append([
            config_label(result), result.device, result.amp,
            str(result.batch_size), 'x'.join(map(str, result.input_size)),
            cell('step_ms', '{:.1f}'.format), f'{result.step_iqr_ms:.1f}',
            cell('images_per_s', '{:.2f}'.format),
            cell('peak_bytes', mib),
            cell('peak_beyond_state_bytes', mib),
            'yes' if result.loss_finite else 'NO',
            cell('latency_ms', '{:.1f}'.format),
            str(result.throughput_batch or '-'),
            cell('throughput_images_per_s', '{:.2f}'.format),
        ])
    return rows


def _definitions(results: Sequence[TrainBenchmark]) -> str:
    machines = sorted({f'{r.device} ({r.device_name}, torch '
                       f'{r.torch_version}, {r.threads} thread(s))'
                       for r in results})
    sources = sorted({r.memory_source for r in results})
    return (
        f'device: {"; ".join(machines)}. step: median time of one '
        f'model.train_step (data preprocessor, forward, backward, optimizer '
        f'step) over the timed steps, IQR: their interquartile range; '
        f'images/s: batch / median step. peak: the most memory in use '
        f'during a training step, measured by {" / ".join(sources)} (cuda '
        f'allocator: torch.cuda.max_memory_allocated; trace: the largest '
        f'total of tensors live at once, each freed after its last use, plus '
        f'parameters and buffers); beyond state: peak minus parameters, '
        f'buffers, gradients and optimizer state. latency b1: median '
        f'model.test_step (preprocessing, forward, box decoding, NMS) at '
        f'batch 1, float32; infer. images/s: at the inference batch. '
        f'Weights: the config\'s initialisation, no checkpoint loaded; '
        f'images and boxes synthetic.')


def train_text(results: Sequence[TrainBenchmark]) -> str:
    """The table and its definitions as plain text."""
    return (AsciiTable(train_rows(results), 'training step').table + '\n' +
            _definitions(results) + '\n')


def train_markdown(results: Sequence[TrainBenchmark]) -> str:
    """The table and its definitions as GitHub-flavoured Markdown."""
    return (GithubFlavoredMarkdownTable(train_rows(results)).table +
            '\n\n' + _definitions(results) + '\n')


def write_train_json(results: Sequence[TrainBenchmark], path: str) -> None:
    """Write a list with one record (:meth:`TrainBenchmark.as_dict`) per
    config."""
    write_text_file(path, json.dumps([r.as_dict() for r in results],
                                     indent=2))


def write_train_markdown(results: Sequence[TrainBenchmark],
                         path: str) -> None:
    """Write :func:`train_markdown` to ``path``."""
    write_text_file(path, train_markdown(results))


def plot_train_benchmark(results: Sequence[TrainBenchmark],
                         path: str) -> None:
    """Two bar charts side by side, one bar per config: peak memory of a
    training step (the model state and the rest stacked) and training
    images/s; saved as PNG (matplotlib's Agg canvas; pyplot's global state
    and backend are left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [config_label(r) for r in results]
    positions = np.arange(len(results))
    figure = Figure(figsize=(10, 0.5 * len(results) + 2.2),
                    layout='constrained')
    FigureCanvasAgg(figure)
    memory, speed = figure.subplots(1, 2, sharey=True)
    state = [r.state_bytes / MIB for r in results]
    beyond = [r.peak_beyond_state_bytes / MIB for r in results]
    memory.barh(positions, state, label='parameters, gradients, optimizer')
    memory.barh(positions, beyond, left=state, label='activations and rest')
    memory.set_yticks(positions, labels)
    memory.invert_yaxis()
    sources = ' / '.join(sorted({r.memory_source for r in results}))
    memory.set_xlabel(f'peak memory of a training step (MiB, {sources})')
    memory.legend(fontsize=8, loc='lower right')
    speed.barh(positions, [r.images_per_s for r in results], color='C2')
    speed.set_xlabel('training images/s')
    for axes in (memory, speed):
        axes.grid(True, axis='x', alpha=0.3)
    setups = sorted({f'{r.device} {r.device_name}, amp {r.amp}, batch '
                     f'{r.batch_size}, {"x".join(map(str, r.input_size))}'
                     for r in results})
    figure.suptitle('; '.join(setups), fontsize=9)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with atomic_open(path, 'wb') as f:
        figure.savefig(f, format='png', dpi=150)
