"""Smoke tests of the command-line tools as the docs invoke them, on tiny
inputs (the session's tiny demo SSD, a few synthetic images) and with
minimal timing, for the tools no other test file runs from its command
line: tools/benchmark_deploy.py, benchmark_nlpool.py,
benchmark_mmcv_ops.py, compact_pruned.py, demo.py, dist_test.sh and the
Slurm scripts. (train.py, test.py, dist_train.sh, export_onnx.py,
test_onnx.py, analyze_model.py, benchmark_pooling.py, coco_subset.py,
eval_driving.py, make_synthetic_coco.py and visualize_pooling.py are run by
their own test files.)
"""
import json
import os
import os.path as osp
import stat
import subprocess
import sys

import pytest

from tiny_demo import ROOT, run_tool_in_process as run_tool, tiny_demo_config



def run_script(args, cwd, **env) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1')
    environ.update(env)
    environ['PYTHONPATH'] = os.pathsep.join(
        [ROOT, environ.get('PYTHONPATH', '')])
    return subprocess.run(args, cwd=str(cwd), env=environ,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_benchmark_deploy(tiny_detector, tmp_path):
    """docs/deployment.md's command with minimal timing: every runtime
    exported, timed (median and IQR), evaluated and sized."""
    out_dir = tmp_path / 'deploy'
    json_file = tmp_path / 'deploy.json'
    printed = run_tool(
        'benchmark_deploy.py', '--model', 'tiny', tiny_detector['config'],
        tiny_detector['checkpoint'], '--calib-images',
        osp.join(tiny_detector['data_root'], 'train'), '--calib-count', '2',
        '--out-dir', str(out_dir), '--min-run-time', '0', '--max-run-time',
        '0.05', '--json', str(json_file))
    assert 'ONNX int8' in printed and 'IQR (ms)' in printed
    [result] = json.loads(json_file.read_text())
    runtimes = ('pytorch', 'onnx_fp32', 'onnx_int8')
    assert result['threads'] == 1
    for runtime in runtimes:
        assert result['latency_ms'][runtime] > 0
        assert result['latency_iqr_ms'][runtime] >= 0
        assert 0 <= result['map50'][runtime] <= 100
        assert osp.isfile(result['files'][f'{runtime}_report'])
    for runtime in runtimes[1:]:
        path = result['files'][runtime]
        assert result['model_bytes'][runtime] == os.path.getsize(path)
    # float32 ONNX computes what PyTorch does: the same detections
    assert result['map']['onnx_fp32'] == result['map']['pytorch']
    assert result['max_abs_diff'] < 1e-4
    # the int8 figure counts one byte per float32 element
    assert result['peak_activation_bytes'] == (
        4 * result['peak_activation_bytes_int8'])


def test_benchmark_deploy_refuses_bad_timing_before_exporting(
        tiny_detector, tmp_path):
    with pytest.raises(SystemExit, match='max_run_time'):
        run_tool('benchmark_deploy.py', '--model', 'tiny',
                 tiny_detector['config'], tiny_detector['checkpoint'],
                 '--calib-images', tiny_detector['data_root'],
                 '--out-dir', str(tmp_path / 'out'), '--min-run-time', '2',
                 '--max-run-time', '1')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('missing', ['config', 'checkpoint', 'calib'])
def test_benchmark_deploy_refuses_missing_files_before_writing(
        tmp_path, missing):
    config = osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_nlp.py')
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    calib = tmp_path / 'calib'
    calib.mkdir()
    files = dict(config=config, checkpoint=str(checkpoint),
                 calib=str(calib))
    files[missing] = str(tmp_path / 'missing')
    with pytest.raises(SystemExit, match=r"error: .* '.*missing' not found"):
        run_tool('benchmark_deploy.py', '--model', 'tiny', files['config'],
                 files['checkpoint'], '--calib-images', files['calib'],
                 '--out-dir', str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


def test_benchmark_nlpool(tmp_path):
    json_file = tmp_path / 'nlpool.json'
    printed = run_tool('benchmark_nlpool.py', '--shape', '1', '4', '8', '8',
                       '--min-run-time', '0', '--max-run-time', '0.01',
                       '--threads', '1', '--json', str(json_file))
    assert 'speed-up' in printed
    result = json.loads(json_file.read_text())
    # the transcription of the authors' module computes the same pooling
    assert result['max_output_diff'] < 1e-5
    assert result['max_grad_diff'] < 1e-5
    assert result['nlpool_ms'] > 0 and result['reference_ms'] > 0


def test_benchmark_mmcv_ops(tmp_path):
    json_file = tmp_path / 'ops.json'
    printed = run_tool('benchmark_mmcv_ops.py', '--threads', '1',
                       '--min-run-time', '0', '--max-run-time', '0.01',
                       '--json', str(json_file))
    rows = json.loads(json_file.read_text())
    assert rows and all(row['median_ms'] > 0 for row in rows)
    assert all(row['op'] in printed for row in rows)


@pytest.mark.skipif(__import__('torch').cuda.is_available(),
                    reason='the message of a torch without CUDA')
@pytest.mark.parametrize('tool,args', [
    ('benchmark_mmcv_ops.py', []),
    ('benchmark_nlpool.py', ['--shape', '1', '4', '8', '8']),
    ('benchmark_pooling.py', ['--shape', '2', '4', '8', '8']),
    ('benchmark_train.py', [osp.join(ROOT, 'configs', 'ssd_mbv2_conv.py')]),
    ('visualize_pooling.py', ['missing.py', 'missing.pth', 'missing.jpg']),
])
def test_device_cuda_without_cuda_is_one_line(tool, args, tmp_path):
    """Every tool's --device goes through one check, before anything is
    built or written (it was torch's AssertionError traceback)."""
    if tool == 'visualize_pooling.py':
        args = [*args, '--out', str(tmp_path / 'out')]
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool, *args, '--device', 'cuda')
    assert str(exit_info.value.code).startswith(
        "error: device 'cuda': this torch (")
    assert 'sees no CUDA device; use --device cpu' in str(exit_info.value)
    assert not (tmp_path / 'out').exists()


def test_compact_pruned_plans_the_widths_of_docs_pruning_table(tmp_path):
    """docs/pruning.md: `tools/compact_pruned.py configs/<config>.py
    --sparsity 0.5 --out DIR`, and the table's figures for s1 = 2."""
    out = tmp_path / 'mem'
    printed = run_tool('compact_pruned.py',
                       osp.join(ROOT, 'configs', 'ssd_mbv2_nlp_s2.py'),
                       '--sparsity', '0.5', '--out', str(out))
    assert (out / 'ssd_mbv2_nlp_s2_compact.py').is_file()
    assert not list(out.glob('*.pth'))
    # first stage peak 6.250 -> 3.125 MiB, backbone peak 6.250 -> 4.688 MiB
    for figure in ('6.250', '3.125', '4.688'):
        assert figure in printed, printed


@pytest.mark.slow
def test_demo_tool_trains_and_reports(tiny_detector, tmp_path):
    """`tools/demo.py --config --data --work-dir` (what `make demo` runs) on
    the tiny config: one iteration, then the metric report."""
    config = tiny_demo_config(tmp_path / 'tiny_demo.py',
                              tiny_detector['data_root'], """
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
""")
    work_dir = tmp_path / 'work'
    proc = run_script([sys.executable, osp.join(ROOT, 'tools', 'demo.py'),
                       '--config', config, '--data',
                       tiny_detector['data_root'], '--work-dir',
                       str(work_dir)], ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '[demo] trained and evaluated' in proc.stdout
    report = json.loads((work_dir / 'driving_metrics.json').read_text())
    assert {entry['name'] for entry in report['per_class']} == {
        'person', 'bicycle', 'car', 'motorcycle', 'bus', 'train', 'truck',
        'traffic light'}


@pytest.mark.slow
def test_dist_test_script_on_one_process(tiny_detector, tmp_path):
    """docs/distributed.md: `bash tools/dist_test.sh CONFIG CKPT N`."""
    work_dir = tmp_path / 'test'
    proc = run_script(
        ['bash', osp.join(ROOT, 'tools', 'dist_test.sh'),
         tiny_detector['config'], tiny_detector['checkpoint'], '1',
         '--work-dir', str(work_dir)], tmp_path,
        PORT=str(29700 + os.getpid() % 200))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (work_dir / 'driving_metrics.json').is_file()


@pytest.mark.parametrize('script,args', [
    ('dist_train.sh', ['CONFIG', '2']),
    ('dist_test.sh', ['CONFIG', 'CKPT', '2']),
    ('slurm_train.sh', ['PART', 'JOB', 'CONFIG', 'WORK']),
    ('slurm_test.sh', ['PART', 'JOB', 'CONFIG', 'CKPT']),
])
def test_scripts_say_what_to_do_without_torch(script, args, tmp_path):
    python = tmp_path / 'python'
    python.write_text('#!/bin/sh\necho "No module named torch" >&2\nexit 1\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    proc = run_script(['bash', osp.join(ROOT, 'tools', script), *args],
                      tmp_path, PYTHON=str(python))
    assert proc.returncode == 1
    assert 'cannot import torch' in proc.stderr
    assert 'source .venv/bin/activate' in proc.stderr
    assert 'PYTHON=.venv/bin/python' in proc.stderr
    proc = run_script(['bash', osp.join(ROOT, 'tools', script), *args],
                      tmp_path, PYTHON='no-such-python')
    assert proc.returncode == 1
    assert "no Python interpreter 'no-such-python' found" in proc.stderr


@pytest.mark.parametrize('script,tool,args', [
    ('slurm_train.sh', 'train.py', ['PART', 'JOB', 'CONFIG', 'WORK']),
    ('slurm_test.sh', 'test.py', ['PART', 'JOB', 'CONFIG', 'CKPT']),
])
def test_slurm_scripts_hand_srun_mmdets_command(script, tool, args,
                                                tmp_path):
    """docs/distributed.md's Slurm lines: `srun` (a stand-in that records
    its arguments) gets the partition, the task counts and our tool with
    the slurm launcher."""
    srun = tmp_path / 'srun'
    srun.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    # the interpreter check passes; srun never starts it
    python = tmp_path / 'python'
    python.write_text('#!/bin/sh\nexit 0\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / 'srun.log'
    proc = run_script(
        ['bash', osp.join(ROOT, 'tools', script), *args, '--extra'],
        tmp_path, PATH=f'{tmp_path}{os.pathsep}{os.environ["PATH"]}',
        PYTHON=str(python), SRUN_LOG=str(log), GPUS='16', GPUS_PER_NODE='8')
    assert proc.returncode == 0, proc.stderr
    argv = log.read_text().split('\n')
    assert argv[:2] == ['-p', 'PART'] and '--job-name=JOB' in argv
    assert '--ntasks=16' in argv and '--ntasks-per-node=8' in argv
    assert '--gres=gpu:8' in argv
    start = argv.index(str(python))
    assert argv[start + 1:start + 4] == ['-u', osp.join(ROOT, 'tools', tool),
                                         'CONFIG']
    assert '--launcher=slurm' in argv and argv[-2:] == ['--extra', '']
