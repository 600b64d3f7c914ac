"""SSD end to end through the command-line tools: train a couple of
iterations, test the saved checkpoint, resume training from it.

Each step fails on the unfixed stack: predict crashes in mmdet 3.3.0's
SSDHead, and torch's weights_only loading rejects mmengine checkpoints (see
sapool_mmdet.compat).
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch

from tiny_demo import ROOT, tiny_demo_config
from sapool_mmdet.datasets import make_synthetic_coco


def tiny_config(tmp_path, data_root: str) -> str:
    """The demo config shrunk to 4 images of 96x96 in batches of 2."""
    return tiny_demo_config(tmp_path / 'tiny_demo.py', data_root, """
train_cfg = dict(max_epochs=1, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=3))
""")


def run_tool(tool: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', tool), *args], cwd=ROOT,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_checkpoint_test_and_resume(tmp_path):
    data_root = str(tmp_path / 'data')
    make_synthetic_coco(data_root, num_train=4, num_val=2,
                        image_size=(96, 96), seed=1)
    work_dir = str(tmp_path / 'work')
    config = tiny_config(tmp_path, data_root)

    run_tool('train.py', config, '--work-dir', work_dir)
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    # The checkpoint loads the safe way: weights_only stays on.
    import sapool_mmdet  # noqa: F401  (allow-lists mmengine's types)
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert state['meta']['iter'] == 2 and state['meta']['epoch'] == 1

    test_dir = str(tmp_path / 'test')
    log = run_tool('test.py', config, ckpt, '--work-dir', test_dir)
    assert 'bbox_mAP' in log
    with open(osp.join(test_dir, 'driving_metrics.json')) as f:
        report = json.load(f)
    assert 0.0 <= report['bbox_mAP_50'] <= 1.0

    log = run_tool('train.py', config, '--work-dir', work_dir, '--resume',
                   '--cfg-options', 'train_cfg.max_epochs=2')
    assert 'resumed epoch: 1, iter: 2' in log
    resumed = torch.load(osp.join(work_dir, 'epoch_2.pth'),
                         map_location='cpu', weights_only=True)
    assert resumed['meta']['iter'] == 4 and resumed['meta']['epoch'] == 2


# Test-only plugin: the write of the first (after SLOW_WRITE_SKIP) file
# whose name matches SLOW_WRITE stops half-way, announces itself in
# SLOW_WRITE_MARKER and sleeps, so the test kills the process inside it.
# It wraps open() (what mmengine uses) and os.fdopen() (what atomic_open
# uses), so it slows the same write with and without the fixes.
SLOW_WRITE_PLUGIN = '''
import builtins, os, re, runpy, sys, time

PATTERN = re.compile(os.environ['SLOW_WRITE'])
MARKER = os.environ['SLOW_WRITE_MARKER']
SKIP = [int(os.environ.get('SLOW_WRITE_SKIP', '0'))]
_open, _fdopen = builtins.open, os.fdopen


class SlowFile:
    def __init__(self, f, name):
        self._f, self._name = f, name

    def write(self, data):
        half = len(data) // 2
        self._f.write(data[:half])
        self._f.flush()
        with _open(MARKER, 'w') as marker:
            marker.write(self._name)
        time.sleep(120)
        return self._f.write(data[half:])

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def _slow(f, name, mode):
    if not any(c in mode for c in 'wax') or not PATTERN.search(name):
        return f
    SKIP[0] -= 1
    return SlowFile(f, name) if SKIP[0] < 0 else f


def slow_open(file, mode='r', *args, **kwargs):
    f = _open(file, mode, *args, **kwargs)
    if isinstance(file, (str, os.PathLike)):
        return _slow(f, os.path.basename(os.fspath(file)), mode)
    return f


def slow_fdopen(fd, mode='r', *args, **kwargs):
    name = os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))
    return _slow(_fdopen(fd, mode, *args, **kwargs), name, mode)


builtins.open, os.fdopen = slow_open, slow_fdopen
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def train_command(config: str, work_dir: str, *args: str) -> list:
    return [
        osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir,
        *args, '--cfg-options', 'randomness.seed=0'
    ]


def one_thread_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


def kill_inside_write(tmp_path, command: list, pattern: str,
                      skip: int = 0) -> str:
    """Run ``command`` with the slow-write plugin and SIGKILL it once it
    is half-way through writing the file ``pattern`` names; returns that
    file's name."""
    plugin = tmp_path / 'slow_write.py'
    plugin.write_text(SLOW_WRITE_PLUGIN)
    marker = tmp_path / 'writing'
    if marker.exists():
        marker.unlink()
    env = dict(one_thread_env(), SLOW_WRITE=pattern, SLOW_WRITE_SKIP=str(
        skip), SLOW_WRITE_MARKER=str(marker))
    proc = subprocess.Popen([sys.executable, str(plugin), *command],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() or not marker.read_text():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, 'the write never started'
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    return marker.read_text()


def run_training(command: list) -> str:
    proc = subprocess.run([sys.executable, *command], cwd=ROOT,
                          env=one_thread_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def final_state(path: str) -> dict:
    import sapool_mmdet  # noqa: F401  (allow-lists mmengine's types)
    return torch.load(path, map_location='cpu',
                      weights_only=True)['state_dict']


@pytest.mark.slow
def test_killed_inside_checkpoint_and_pointer_writes_resumes_exactly(
        tmp_path):
    """A training killed half-way through writing a checkpoint, resumed,
    killed half-way through writing last_checkpoint, resumed again, ends
    with the weights of a run never stopped (same seed, one thread)."""
    data_root = str(tmp_path / 'data')
    make_synthetic_coco(data_root, num_train=4, num_val=2,
                        image_size=(96, 96), seed=1)
    config = tiny_config(tmp_path, data_root)
    epochs = ('train_cfg.max_epochs=3',
              'default_hooks.checkpoint.max_keep_ckpts=1')
    reference = str(tmp_path / 'reference')
    run_training(train_command(config, reference, '--cfg-options', *epochs))

    work_dir = str(tmp_path / 'work')
    command = train_command(config, work_dir, '--resume', '--cfg-options',
                            *epochs)
    written = kill_inside_write(tmp_path, command, r'epoch_2\.pth')
    assert written.startswith('.epoch_2.pth.') and written.endswith('.tmp')
    assert sorted(n for n in os.listdir(work_dir) if 'epoch' in n) == \
        sorted(['epoch_1.pth', written])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'epoch_1.pth')

    # the first pointer write of the resumed run is epoch 2's
    written = kill_inside_write(tmp_path, command, r'last_checkpoint')
    assert written.startswith('.last_checkpoint.')
    assert sorted(n for n in os.listdir(work_dir) if 'epoch' in n) == [
        'epoch_1.pth', 'epoch_2.pth']  # epoch 1 goes after the pointer

    log = run_training(command)
    assert f'removed {osp.join(work_dir, written)}, left by a run killed ' \
           f'while writing' in log
    assert f'resume: continuing from {osp.join(work_dir, "epoch_2.pth")}' \
        in log
    assert not [n for n in os.listdir(work_dir) if n.endswith('.tmp')]
    resumed = final_state(osp.join(work_dir, 'epoch_3.pth'))
    expected = final_state(osp.join(reference, 'epoch_3.pth'))
    assert resumed.keys() == expected.keys()
    for key in expected:
        assert torch.equal(resumed[key], expected[key]), key


@pytest.mark.slow
def test_test_tool_refuses_a_checkpoint_of_another_model(tmp_path):
    data_root = str(tmp_path / 'data')
    make_synthetic_coco(data_root, num_train=4, num_val=2,
                        image_size=(96, 96), seed=1)
    config = tiny_config(tmp_path, data_root)
    other = osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_conv.py')
    from mmengine.config import Config
    from mmdet.registry import MODELS
    import sapool_mmdet  # noqa: F401
    model = MODELS.build(Config.fromfile(other).model)
    ckpt = str(tmp_path / 'conv.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)

    out = str(tmp_path / 'results.pkl')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'test.py'), config, ckpt,
         '--work-dir', str(tmp_path / 'test'), '--out', out], cwd=ROOT,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: checkpoint '{ckpt}' does not fit the "
                           f'model (SingleStageDetector')
    assert ' missing from the checkpoint (' in line
    assert '--allow-partial' in line and 'Traceback' not in proc.stderr
    assert not osp.exists(out)

    log = run_tool('test.py', config, ckpt, '--work-dir',
                   str(tmp_path / 'test'), '--out', out, '--allow-partial')
    assert 'bbox_mAP' in log and osp.isfile(out)
