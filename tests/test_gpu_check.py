"""tools/gpu_check.sh on a machine without a GPU: its refusals, its CUDA
parts reported as skipped, the benchmarks run end to end on the CPU at tiny
sizes (GPU_CHECK_DEVICE=cpu), and one part failing or timing out without
stopping the others."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(ROOT, 'tools', 'gpu_check.sh')
PARTS = ['env', 'cuda-tests', 'train-fp32', 'train-amp', 'nlpool',
         'pooling', 'demo-amp']
FAST = '--min-run-time 0.01 --max-run-time 0.05 --threads 1'
TINY = dict(
    GPU_CHECK_TRAIN_ARGS='--input-size 64 64 --batch-size 2 --steps 1 '
    f'--warmup 1 --throughput-batch 2 {FAST}',
    GPU_CHECK_NLPOOL_ARGS=f'--shape 1 4 8 8 {FAST}',
    # batch 2: GaussianPool's batch norm needs more than one value
    GPU_CHECK_POOLING_ARGS=f'--methods NLPool GaussianPool --shape 2 4 8 8 '
    f'{FAST}')


def run_check(out_dir, **env):
    """Run the script with this interpreter; returns the finished process."""
    environment = dict(os.environ, PYTHON=sys.executable, **env)
    return subprocess.run(['bash', SCRIPT, str(out_dir)], env=environment,
                          capture_output=True, text=True, timeout=600)


def summary_statuses(out_dir) -> dict:
    """Part -> (status, log) from summary.txt's fixed-width table."""
    with open(osp.join(out_dir, 'summary.txt')) as f:
        lines = f.read().splitlines()
    header = next(i for i, line in enumerate(lines)
                  if line.startswith('part '))
    return {line[:12].strip(): (line[13:63].strip(), line[74:].strip())
            for line in lines[header + 1:]}


def test_usage_errors(tmp_path):
    no_argument = subprocess.run(['bash', SCRIPT], capture_output=True,
                                 text=True)
    assert no_argument.returncode == 2
    assert 'usage: tools/gpu_check.sh OUT_DIR' in no_argument.stderr
    (tmp_path / 'old.log').write_text('an earlier run\n')
    used = run_check(tmp_path)
    assert used.returncode == 2
    assert 'is not an empty folder' in used.stderr
    assert os.listdir(tmp_path) == ['old.log']  # nothing written


def test_an_interpreter_without_torch_is_named(tmp_path):
    python = tmp_path / 'python'
    python.write_text('#!/bin/sh\n'
                      'echo "ModuleNotFoundError: No module named torch" >&2\n'
                      'exit 1\n')
    python.chmod(0o755)
    result = subprocess.run(
        ['bash', SCRIPT, str(tmp_path / 'out')],
        env=dict(os.environ, PYTHON=str(python)), capture_output=True,
        text=True)
    assert result.returncode == 2
    assert f'{python} cannot import torch' in result.stderr
    assert not (tmp_path / 'out').exists()  # a check that cannot start


def test_bad_settings_are_refused(tmp_path):
    result = run_check(tmp_path / 'a', GPU_CHECK_DEVICE='tpu')
    assert result.returncode == 2
    assert "GPU_CHECK_DEVICE must be cuda or cpu, got 'tpu'" in result.stderr
    result = run_check(tmp_path / 'b', GPU_CHECK_DEMO_TIMEOUT='2m')
    assert result.returncode == 2
    assert "whole seconds >= 1, got '2m'" in result.stderr
    assert os.listdir(tmp_path) == []  # writes nothing


@pytest.mark.slow
def test_cpu_run_end_to_end(tmp_path):
    """Every benchmark on the CPU at tiny sizes; the parts that need CUDA
    are skipped, and say so."""
    result = run_check(tmp_path, GPU_CHECK_DEVICE='cpu', **TINY)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = summary_statuses(tmp_path)
    assert list(statuses) == PARTS
    needs_cuda = 'skipped (needs CUDA; GPU_CHECK_DEVICE=cpu)'
    assert statuses == {
        'env': ('ok', '01-env.log'),
        'cuda-tests': (needs_cuda, '-'),
        'train-fp32': ('ok', '03-train-fp32.log'),
        'train-amp': (needs_cuda, '-'),
        'nlpool': ('ok', '05-nlpool.log'),
        'pooling': ('ok', '06-pooling.log'),
        'demo-amp': (needs_cuda, '-'),
    }
    summary = (tmp_path / 'summary.txt').read_text()
    assert summary.startswith('sapool-mmdet GPU check: started ')
    assert ', finished' in summary.splitlines()[0]
    assert f'torch {torch.__version__}' in summary
    env_log = (tmp_path / '01-env.log').read_text()
    assert 'sapool_mmdet 0.1.0: torch' in env_log
    assert 'mmcv compiled ops (mmcv._ext):' in env_log
    with open(tmp_path / 'train-fp32.json') as f:
        grid = json.load(f)
    assert [osp.basename(r['config']) for r in grid] == [
        'ssd_mbv2_conv.py', 'ssd_mbv2_lip.py', 'ssd_mbv2_nlp.py',
        'ssd_mbv2_nlp_s2.py', 'ssd_r18_conv.py', 'ssd_r18_nlp.py']
    assert all(r['device'] == 'cpu' and r['loss_finite'] for r in grid)
    for name in ('train-fp32.md', 'train-fp32.png', 'pooling.md'):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / 'nlpool.json') as f:
        assert json.load(f)['max_output_diff'] < 1e-4
    with open(tmp_path / 'pooling.json') as f:
        methods = [r['method'] for r in json.load(f)]
    assert methods == ['NLPool', 'GaussianPool']
    assert not [name for name in os.listdir(tmp_path)
                if name.startswith('.')]  # no temporary files left


@pytest.mark.slow
def test_failures_and_timeouts_do_not_stop_the_other_parts(tmp_path):
    result = run_check(
        tmp_path, GPU_CHECK_DEVICE='cpu', GPU_CHECK_ENV_TIMEOUT='1',
        GPU_CHECK_TRAIN_ARGS='--steps 0', GPU_CHECK_POOLING_TIMEOUT='1',
        GPU_CHECK_NLPOOL_ARGS=TINY['GPU_CHECK_NLPOOL_ARGS'])
    assert result.returncode == 1
    statuses = summary_statuses(tmp_path)
    assert statuses['env'] == ('failed (timed out after 1 s)', '01-env.log')
    assert statuses['train-fp32'] == ('failed (exit 1)', '03-train-fp32.log')
    assert 'steps must be an integer >= 1, got 0' in (
        tmp_path / '03-train-fp32.log').read_text()
    assert statuses['nlpool'] == ('ok', '05-nlpool.log')
    assert statuses['pooling'] == ('failed (timed out after 1 s)',
                                   '06-pooling.log')
    assert (tmp_path / 'nlpool.json').is_file()
    assert not (tmp_path / 'pooling.json').exists()


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='checks the report of a machine without CUDA')
def test_without_cuda_the_cuda_parts_are_skipped(tmp_path):
    result = run_check(tmp_path, GPU_CHECK_ENV_TIMEOUT='1')
    assert result.returncode == 1  # the env part timed out
    statuses = summary_statuses(tmp_path)
    assert list(statuses) == PARTS
    assert all(statuses[part] == ('skipped (no CUDA device visible to '
                                  'torch)', '-') for part in PARTS[1:])
    assert 'CUDA device: none; benchmarks on: cuda' in (
        tmp_path / 'summary.txt').read_text()


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='checks the message of a machine without CUDA')
def test_demo_amp_needs_cuda_and_says_so_before_any_work(tmp_path):
    from sapool_mmdet.engine.demo import run_demo
    config = osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_nlp.py')
    with pytest.raises(ValueError, match="amp trains in float16 with "
                       "mmengine's AmpOptimWrapper, which needs a CUDA "
                       "device"):
        run_demo(config, str(tmp_path / 'data'), str(tmp_path / 'work'),
                 amp=True)
    assert os.listdir(tmp_path) == []  # no data rendered, no work dir
