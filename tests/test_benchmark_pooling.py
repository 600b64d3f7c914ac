"""tools/benchmark_pooling.py and the functions behind it, on tiny shapes."""
import json
import runpy
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from sapool_mmdet.analysis.benchmark import (benchmark_pooling, benchmark_rows,
                                             split_pool_options)

TOOL = str(Path(__file__).resolve().parents[1] / 'tools' /
           'benchmark_pooling.py')
FLOAT = 4
# Time one call after the timer's own warm-up call: the tests check what is
# reported, not how fast.
QUICK = dict(min_run_time=0, max_run_time=1e-3)
QUICK_ARGS = ('--min-run-time', 0, '--max-run-time', 1e-3)
KEYS = {
    'method', 'shape', 'stride', 'device', 'options', 'params', 'flops',
    'forward_ms', 'forward_iqr_ms', 'forward_backward_ms',
    'forward_backward_iqr_ms', 'threads', 'peak_forward_bytes',
    'peak_forward_backward_bytes', 'cuda_peak_forward_backward_bytes',
    'error'
}


def run_tool(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', [TOOL, *map(str, args)])
    runpy.run_path(TOOL, run_name='__main__')


def test_two_methods_one_repeat():
    nlpool, avgpool = benchmark_pooling(['NLPool', 'AvgPool'],
                                        shapes=[(1, 8, 8, 8)], **QUICK,
                                        device='cpu', progress=False,
                                        threads=1)
    for result in (nlpool, avgpool):
        assert set(asdict(result)) == KEYS
        assert result.error == '' and result.device == 'cpu'
        assert result.shape == (1, 8, 8, 8) and result.stride == 2
        assert result.forward_ms > 0 and result.forward_backward_ms > 0
        assert result.forward_iqr_ms >= 0 and result.threads == 1
        assert result.cuda_peak_forward_backward_bytes is None
    # Window sums only: one FLOP per input element, no parameters; the
    # inference peak is the input and the output, live together.
    assert avgpool.params == 0 and avgpool.flops == 8 * 8 * 8
    assert avgpool.peak_forward_bytes == (512 + 128) * FLOAT
    # Training: input, output gradient, output and input gradient.
    assert avgpool.peak_forward_backward_bytes == 2 * (512 + 128) * FLOAT
    # NLPool (patch 2, 2 heads): 16 tokens of 8 channels; its count
    # includes q k^T and attn v.
    attention = 2 * 16 * 16 * (4 + 4)
    assert nlpool.params > 0 and nlpool.flops > attention
    assert nlpool.peak_forward_backward_bytes > nlpool.peak_forward_bytes


def test_pool_options_reach_the_method():
    """Patch size 4 on 8x8: 4 tokens instead of 16, so the attention term
    (and with it the FLOPs) shrinks."""
    default, = benchmark_pooling(['NLPool'], shapes=[(1, 8, 8, 8)],
                                 **QUICK, progress=False)
    patched, = benchmark_pooling(['NLPool'], shapes=[(1, 8, 8, 8)],
                                 **QUICK, progress=False,
                                 options=split_pool_options(
                                     {'NLPool.patch_size': 4}))
    assert patched.options == {'patch_size': 4} and not patched.error
    assert patched.flops < default.flops
    assert benchmark_rows([patched])[1][2] == 'NLPool(patch_size=4)'
    with pytest.raises(ValueError, match='TYPE.ARGUMENT=VALUE'):
        split_pool_options({'patch_size': 4})


def test_failing_method_gets_an_error_row():
    # NLPool's two heads cannot split a 3-channel embedding.
    nlpool, maxpool = benchmark_pooling(['NLPool', 'MaxPool'],
                                        shapes=[(1, 3, 4, 4)], **QUICK,
                                        progress=False)
    assert 'num_heads=2 must divide' in nlpool.error
    assert maxpool.error == ''
    rows = benchmark_rows([nlpool, maxpool])
    assert rows[1][3].startswith('ValueError:')


def test_bad_arguments_are_refused_before_running():
    with pytest.raises(ValueError, match='unknown pooling method'):
        benchmark_pooling(['NoSuchPool'], progress=False)
    with pytest.raises(ValueError, match='four positive integers'):
        benchmark_pooling(['MaxPool'], shapes=[(1, 3, 4)], progress=False)
    with pytest.raises(ValueError, match='stride'):
        benchmark_pooling(['MaxPool'], stride=0, progress=False)
    with pytest.raises(ValueError, match='max_run_time > 0'):
        benchmark_pooling(['MaxPool'], max_run_time=0, progress=False)
    with pytest.raises(ValueError, match='threads'):
        benchmark_pooling(['MaxPool'], threads=0, progress=False)


def test_tool_table_and_json(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'bench.json'
    run_tool(monkeypatch, '--methods', 'LIPPool', 'MaxPool', '--shape', 1,
             4, 6, 6, '--shape', 1, 4, 5, 7, *QUICK_ARGS, '--threads', 1,
             '--device', 'cpu', '--json', out, '--markdown',
             tmp_path / 'bench.md')
    stdout = capsys.readouterr().out
    assert 'LIPPool' in stdout and '1x4x5x7' in stdout
    header = [cell.strip() for cell in stdout.splitlines()[1].split('|')]
    assert header[6:11] == ['forward (ms)', 'fwd IQR (ms)', 'fwd+bwd (ms)',
                            'fwd+bwd IQR (ms)', 'threads']
    records = json.loads(out.read_text())
    assert [(r['method'], r['shape']) for r in records] == [
        ('LIPPool', [1, 4, 6, 6]), ('MaxPool', [1, 4, 6, 6]),
        ('LIPPool', [1, 4, 5, 7]), ('MaxPool', [1, 4, 5, 7])
    ]
    assert all(set(r) == KEYS and r['threads'] == 1 for r in records)
    assert (tmp_path / 'bench.md').read_text().startswith('| input')


def test_tool_reports_failures_and_unknown_methods(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, '--methods', 'NLPool', '--shape', 1, 3, 4, 4,
                 *QUICK_ARGS)
    assert '1 measurement(s) failed' in str(exit_info.value)
    assert 'ValueError' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, '--methods', 'NoSuchPool')
    assert "unknown pooling method(s) ['NoSuchPool']" in str(exit_info.value)
