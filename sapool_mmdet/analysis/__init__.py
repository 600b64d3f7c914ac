"""Activation memory, FLOPs, latency, pooling benchmarks and pictures of
pooling weights: the logic behind tools/analyze_model.py,
tools/benchmark_pooling.py and tools/visualize_pooling.py.

Not imported by ``import sapool_mmdet``; matplotlib is imported only when a
picture is drawn.
"""
from .analyze import (ModelReport, StageReport, analyze_config,
                      analyze_configs, analyze_model)
from .benchmark import (DEFAULT_SHAPES, PoolingBenchmark, benchmark_method,
                        benchmark_pooling)
from .config import (SCOPES, build_from_config, check_input_size,
                     infer_input_size, load_config)
from .flops import EXTRA_FLOP_HANDLES, FlopCount, count_flops
from .latency import Latency, add_timing_arguments, measure_latency
from .memory import ActivationTrace, trace_activations
from .report import (plot_memory_vs_flops, reports_markdown, reports_text,
                     write_json, write_markdown)
from .visualize import find_pooling_layers, visualize_pooling

__all__ = [
    'ActivationTrace', 'trace_activations', 'EXTRA_FLOP_HANDLES',
    'FlopCount', 'count_flops', 'Latency', 'measure_latency',
    'add_timing_arguments', 'SCOPES', 'load_config',
    'check_input_size', 'infer_input_size', 'build_from_config',
    'ModelReport', 'StageReport', 'analyze_model', 'analyze_config',
    'analyze_configs', 'reports_text', 'reports_markdown', 'write_json',
    'write_markdown', 'plot_memory_vs_flops', 'DEFAULT_SHAPES',
    'PoolingBenchmark', 'benchmark_method', 'benchmark_pooling',
    'find_pooling_layers', 'visualize_pooling'
]
