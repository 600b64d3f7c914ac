"""Tables, Markdown, JSON and the memory-vs-FLOPs plot of
:class:`~.analyze.ModelReport` lists."""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence

from terminaltables import AsciiTable, GithubFlavoredMarkdownTable

from ..fileio import atomic_open
from .analyze import ModelReport

__all__ = ['mib', 'summary_rows', 'stage_rows', 'reports_text',
           'reports_markdown', 'write_json', 'write_markdown',
           'write_text_file', 'plot_memory_vs_flops', 'config_label']

MIB = 2**20


def mib(nbytes: float) -> str:
    """Bytes as MiB (2**20 bytes) with three decimals."""
    return f'{nbytes / MIB:.3f}'


def config_label(report: ModelReport) -> str:
    """The config's file name without directory and extension."""
    return osp.splitext(osp.basename(report.config))[0] or '<model>'


def _with_ratio(text: str, value: float, first: Optional[float]) -> str:
    if first is None:
        return text
    ratio = value / first if first else float('nan')
    return f'{text} ({ratio:.2f}x)'


def summary_rows(reports: Sequence[ModelReport]) -> List[List[str]]:
    """One row per report; with several, every measured value is followed
    by its ratio to the first report's."""
    ref = reports[0] if len(reports) > 1 else None
    rows = [['config', 'scope', 'input HxW', 'params (M)', 'FLOPs (G)',
             'peak act. fp32 (MiB)', 'peak act. int8 (MiB)',
             'total act. (MiB)', 'latency (ms)', 'IQR (ms)', 'threads',
             'layer at the peak']]
    for report in reports:

        def cell(value: float, text: str, attribute: str) -> str:
            first = None if ref is None else getattr(ref, attribute)
            return _with_ratio(text, value, first)

        rows.append([
            config_label(report), report.scope,
            'x'.join(map(str, report.input_size)),
            cell(report.params, f'{report.params / 1e6:.3f}', 'params'),
            cell(report.flops, f'{report.flops / 1e9:.3f}', 'flops'),
            cell(report.peak_activation_bytes,
                 mib(report.peak_activation_bytes), 'peak_activation_bytes'),
            cell(report.peak_activation_bytes_int8,
                 mib(report.peak_activation_bytes_int8),
                 'peak_activation_bytes_int8'),
            cell(report.total_activation_bytes,
                 mib(report.total_activation_bytes),
                 'total_activation_bytes'),
            cell(report.latency_ms, f'{report.latency_ms:.1f}',
                 'latency_ms'),
            f'{report.latency_iqr_ms:.1f}', str(report.latency_threads),
            report.peak_layer,
        ])
    return rows


def stage_rows(report: ModelReport) -> List[List[str]]:
    """Per stage: output shape(s), output size in fp32 and int8, and the
    peak activation memory while the stage runs with the layer that sets
    it."""
    rows = [['stage', 'output shape', 'output fp32 (MiB)',
             'output int8 (MiB)', 'peak while running (MiB)',
             'layer at the peak']]
    for stage in report.stages:
        shapes = ', '.join('x'.join(map(str, s))
                           for s in stage.output_shapes) or '-'
        outputs = bool(stage.output_shapes)
        rows.append([
            stage.name, shapes,
            mib(stage.output_bytes) if outputs else '-',
            mib(stage.output_bytes_int8) if outputs else '-',
            mib(stage.peak_bytes), stage.peak_layer
        ])
    return rows


def _definitions() -> str:
    return ('peak act.: largest total size of the tensors live at once '
            'along the forward pass (every tensor freed after its last use; '
            'parameters excluded); total act.: all activations created. '
            'FLOPs: multiply-add = 1, attention included. latency: median '
            'time of one forward (torch.utils.benchmark.Timer), IQR: '
            'interquartile range of the timed blocks, threads: intra-op '
            'threads.')


def _options(reports: Sequence[ModelReport]) -> str:
    options = {json.dumps(report.cfg_options, sort_keys=True)
               for report in reports if report.cfg_options}
    return f'cfg-options: {", ".join(sorted(options))}' if options else ''


def reports_text(reports: Sequence[ModelReport]) -> str:
    """The summary table and one stage table per report, as plain text."""
    parts = [AsciiTable(summary_rows(reports), 'models').table,
             _definitions()]
    if _options(reports):
        parts.append(_options(reports))
    for report in reports:
        parts.append(AsciiTable(stage_rows(report),
                                f'stages of {config_label(report)}').table)
    return '\n'.join(parts) + '\n'


def reports_markdown(reports: Sequence[ModelReport]) -> str:
    """The same tables as GitHub-flavoured Markdown."""
    parts = [GithubFlavoredMarkdownTable(summary_rows(reports)).table,
             '', _definitions()]
    if _options(reports):
        parts += ['', _options(reports)]
    for report in reports:
        parts += ['', f'Stages of `{config_label(report)}` '
                  f'({report.scope}, input '
                  f'{"x".join(map(str, report.input_size))}):', '',
                  GithubFlavoredMarkdownTable(stage_rows(report)).table]
    return '\n'.join(parts) + '\n'


def _parent_dir(path: str) -> None:
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)


def write_text_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, creating its directory."""
    _parent_dir(path)
    with atomic_open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def write_json(reports: Sequence[ModelReport], path: str) -> None:
    """Write a list with one record (:meth:`ModelReport.as_dict`) per
    report."""
    write_text_file(
        path, json.dumps([report.as_dict() for report in reports], indent=2))


def write_markdown(reports: Sequence[ModelReport], path: str) -> None:
    """Write :func:`reports_markdown` to ``path``."""
    write_text_file(path, reports_markdown(reports))


def plot_memory_vs_flops(reports: Sequence[ModelReport], path: str) -> None:
    """Scatter peak activation memory against FLOPs, one labelled point per
    report, saved as PNG (matplotlib's Agg canvas; pyplot's global state and
    backend are left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    points = [(report.flops / 1e9, report.peak_activation_bytes / MIB)
              for report in reports]
    y_span = max(y for _, y in points) or 1.0
    for index, (report, (x, y)) in enumerate(zip(reports, points)):
        axes.scatter([x], [y])
        # Configs with (nearly) the same peak would print their labels on
        # top of each other: stack each one below the earlier ones.
        level = sum(1 for _, other in points[:index]
                    if abs(other - y) < 0.02 * y_span)
        axes.annotate(config_label(report), (x, y),
                      textcoords='offset points', xytext=(4, 4 - 10 * level),
                      fontsize=8)
    axes.set_xlabel('FLOPs (G, multiply-add = 1)')
    axes.set_ylabel('peak activation memory (MiB, fp32)')
    scopes = sorted({report.scope for report in reports})
    axes.set_title(f'peak activation memory vs FLOPs ({", ".join(scopes)})')
    axes.grid(True, alpha=0.3)
    axes.margins(0.15)
    _parent_dir(path)
    with atomic_open(path, 'wb') as f:
        figure.savefig(f, format='png', dpi=150)
