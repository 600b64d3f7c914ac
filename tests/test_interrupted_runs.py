"""Nothing is lost when a run is killed: atomic checkpoints and pointer,
resume from the newest good checkpoint, refused mismatched weights, one
run per work dir, one-line errors naming the file (sapool_mmdet.engine
.durable, sapool_mmdet.checkpoint, sapool_mmdet.fileio).

These tests train a two-layer regression model with mmengine's own Runner
and CheckpointHook in this process (a fraction of a second per run); the
detector trained in a subprocess and killed inside a checkpoint write is
in tests/test_train_test_resume.py.
"""
import errno
import json
import os
import os.path as osp
import subprocess
import sys
import time

import mmengine
import pytest
import torch
from mmengine.config import Config
from mmengine.fileio.backends import LocalBackend
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

import sapool_mmdet  # noqa: F401  (applies the fixes under test)
from tiny_demo import tiny_demo_config
from sapool_mmdet.checkpoint import (CheckpointError, check_weights_fit,
                                     load_weights, read_checkpoint)
from sapool_mmdet.engine import (WorkDirBusyError, choose_resume_checkpoint,
                                 describe_error, run_cli)
from sapool_mmdet.engine.workdir_lock import LOCK_NAME
from sapool_mmdet.fileio import (atomic_open, check_free_space,
                                 remove_stale_temporaries, scratch_directory)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class Regressor(BaseModel):
    """y = w2 relu(w1 x): small, with weights SGD keeps changing."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 1))

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.body(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=((out - torch.stack(targets))**2).mean())
        return out


def regression_data(n: int = 12):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    y = x @ torch.tensor([[0.5], [-1.0], [2.0]]) + 0.1
    return [dict(inputs=x[i], targets=y[i]) for i in range(n)]


RUNNERS = iter(range(10**6))


def make_runner(work_dir: str, max_epochs: int, hidden: int = 8,
                max_keep_ckpts: int = 2, **kwargs) -> Runner:
    torch.manual_seed(0)
    # a name of its own: runners of one second would share mmengine's logger
    kwargs.setdefault('experiment_name', f'toy{next(RUNNERS)}')
    return Runner(
        model=Regressor(hidden),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=regression_data(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=4,
            num_workers=0),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1,
                            max_keep_ckpts=max_keep_ckpts),
            logger=dict(type='LoggerHook', interval=100)),
        randomness=dict(seed=7),
        default_scope='mmengine',
        **kwargs)


def final_weights(runner: Runner) -> dict:
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def truncate(path: str, fraction: float = 0.5) -> None:
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * fraction)])


def log_text(runner: Runner) -> str:
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


# atomic writes -----------------------------------------------------------


def test_atomic_open_failure_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / 'report.json'
    target.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_open(str(target)) as f:
            f.write('new, half written')
            raise RuntimeError('killed')
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['report.json']


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    stale = ['.epoch_3.pth.k2j_x9a1.tmp', '.last_checkpoint.abcdefgh.tmp']
    kept = ['epoch_2.pth', '.keep.tmp', 'notes.tmp', '.run.lock']
    for name in stale + kept:
        (tmp_path / name).write_text('x')
    removed = remove_stale_temporaries(str(tmp_path))
    assert sorted(osp.basename(p) for p in removed) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def test_test_tool_cleans_the_temporary_of_its_out_file(tmp_path):
    from sapool_mmdet.engine.launch import run_mmdet_tool
    left = tmp_path / '.results.pkl.a1b2c3d4.tmp'
    other = tmp_path / '.other.pkl.a1b2c3d4.tmp'
    for path in (left, other):
        path.write_bytes(b'half')
    config = tmp_path / 'missing_config.py'
    with pytest.raises(SystemExit, match='config file .* not found'):
        run_mmdet_tool('test', [str(config), 'x.pth', '--out',
                                str(tmp_path / 'results.pkl')])
    assert left.exists()  # bad arguments: nothing touched
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    with pytest.raises(SystemExit):
        # mmdet's parser stops at the unknown flag, after the clean-up
        run_mmdet_tool('test', [
            osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_nlp.py'),
            str(ckpt), '--out', str(tmp_path / 'results.pkl'), '--bad'])
    assert not left.exists() and other.exists()


def test_test_tool_refuses_an_out_file_that_is_not_a_pickle(tmp_path):
    from sapool_mmdet.engine.launch import run_mmdet_tool
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'')
    # one line before the model is built (mmdet's own check is an
    # AssertionError traceback after it)
    with pytest.raises(SystemExit, match=r"error: --out '.*results\.json'"
                       r": .* must end in \.pkl or \.pickle"):
        run_mmdet_tool('test', [
            osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_nlp.py'),
            str(ckpt), '--out', str(tmp_path / 'results.json')])
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth']


def test_a_new_run_cleans_what_a_killed_write_left(tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / '.epoch_1.pth.a1b2c3d4.tmp').write_bytes(b'\0' * 100)
    make_runner(str(work_dir), max_epochs=1)
    assert not (work_dir / '.epoch_1.pth.a1b2c3d4.tmp').exists()


def test_free_space_is_checked_before_writing(tmp_path):
    free = __import__('shutil').disk_usage(tmp_path).free
    with pytest.raises(OSError) as info:
        with atomic_open(str(tmp_path / 'big.pth'), 'wb',
                         expected_size=free + 1):
            raise AssertionError('must not be reached')
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(tmp_path / 'big.pth')
    assert 'MiB free' in info.value.strerror
    assert os.listdir(tmp_path) == []
    check_free_space(str(tmp_path / 'small.pth'), 10)


def test_results_pickle_goes_through_a_temporary(tmp_path, monkeypatch):
    """mmengine.dump (DumpResults, tools/test.py --out) writes via
    LocalBackend.put: a failure inside leaves no file."""
    out = str(tmp_path / 'results.pkl')
    seen = []
    real_replace = os.replace

    def replace_and_record(src, dst):
        seen.append((osp.basename(src), osp.exists(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', replace_and_record)
    mmengine.dump([dict(score=0.25), dict(score=0.75)], out)
    assert seen == [(seen[0][0], False)]
    assert seen[0][0].startswith('.results.pkl.')
    assert mmengine.load(out) == [dict(score=0.25), dict(score=0.75)]


def test_scratch_directories_of_killed_processes_are_removed(
        tmp_path, monkeypatch):
    monkeypatch.setattr(__import__('tempfile'), 'tempdir', str(tmp_path))
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    orphan = tmp_path / f'sapool_int8_{dead.pid}_abc123xy'
    live = tmp_path / f'sapool_int8_{os.getppid()}_abc123xy'
    other = tmp_path / f'other_{dead.pid}_abc123xy'
    for folder in (orphan, live, other):
        folder.mkdir()
        (folder / 'float.onnx').write_bytes(b'x')
    with pytest.raises(RuntimeError):
        with scratch_directory('sapool_int8') as folder:
            assert osp.basename(folder).startswith(
                f'sapool_int8_{os.getpid()}_')
            raise RuntimeError('quantisation failed')
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])


# full disk -------------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MiB tmpfs (needs root and mount; skipped elsewhere)."""
    mount_point = tmp_path / 'small'
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip('mounting a small tmpfs needs root')
    proc = subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(mount_point)],
        capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {proc.stderr.strip()}')
    try:
        yield mount_point
    finally:
        subprocess.run(['umount', '-l', str(mount_point)], check=True)


def fill(folder, leave_bytes: int) -> None:
    free = __import__('shutil').disk_usage(folder).free
    with open(osp.join(folder, 'filler'), 'wb') as f:
        f.write(b'\0' * max(free - leave_bytes, 0))


def test_full_disk_keeps_the_last_checkpoint(small_filesystem):
    """hidden=20000: ~0.9 MiB of weights and 0.9 MiB of momentum per
    checkpoint. With room for one more than the first, the second epoch's
    checkpoint is refused up front and epoch 1 stays intact."""
    work_dir = str(small_filesystem / 'work')
    make_runner(work_dir, max_epochs=1, hidden=20000,
                max_keep_ckpts=1).train()
    first = osp.join(work_dir, 'epoch_1.pth')
    size = osp.getsize(first)
    fill(str(small_filesystem), leave_bytes=size // 2)
    runner = make_runner(work_dir, max_epochs=2, hidden=20000,
                         max_keep_ckpts=1, resume=True)
    with pytest.raises(OSError) as info:
        runner.train()
    assert info.value.errno == errno.ENOSPC
    assert 'epoch_1.pth' in info.value.strerror  # named as kept
    assert not [n for n in os.listdir(work_dir) if n.endswith('.tmp')]
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == first
    assert read_checkpoint(first)['meta']['epoch'] == 1


def test_disk_full_during_a_write_leaves_no_file(small_filesystem):
    """No size given up front: the write itself hits ENOSPC."""
    target = str(small_filesystem / 'results.pkl')
    with pytest.raises(OSError) as info:
        with atomic_open(target, 'wb') as f:
            f.write(b'\1' * (8 << 20))
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == target
    assert os.listdir(small_filesystem) == []
    assert describe_error(info.value) == \
        f'{target}: No space left on device'


# checkpoint order and resume ------------------------------------------------


def test_old_checkpoint_removed_only_after_new_one_and_pointer(
        tmp_path, monkeypatch):
    work_dir = str(tmp_path / 'work')
    runner = make_runner(work_dir, max_epochs=3, max_keep_ckpts=1)
    removals = []
    real_remove = LocalBackend.remove

    def checked_remove(backend, path):
        # at this moment the newer checkpoint and its pointer are complete
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            newest = f.read()
        removals.append((osp.basename(path), osp.basename(newest),
                         read_checkpoint(newest)['meta']['epoch']))
        real_remove(backend, path)

    monkeypatch.setattr(LocalBackend, 'remove', checked_remove)
    runner.train()
    assert removals == [('epoch_1.pth', 'epoch_2.pth', 2),
                        ('epoch_2.pth', 'epoch_3.pth', 3)]
    assert sorted(n for n in os.listdir(work_dir) if n.endswith('.pth')) \
        == ['epoch_3.pth']
    assert not [n for n in os.listdir(work_dir) if n.endswith('.tmp')]


def test_resume_skips_a_truncated_checkpoint_and_empty_pointer(tmp_path):
    reference = make_runner(str(tmp_path / 'ref'), max_epochs=3)
    reference.train()

    work_dir = str(tmp_path / 'work')
    make_runner(work_dir, max_epochs=2).train()
    truncate(osp.join(work_dir, 'epoch_2.pth'))
    open(osp.join(work_dir, 'last_checkpoint'), 'w').close()

    resumed = make_runner(work_dir, max_epochs=3, resume=True)
    resumed.train()
    log = log_text(resumed)
    assert 'last_checkpoint is empty' in log
    assert "skipped checkpoint '" in log and 'epoch_2.pth' in log \
        and 'truncated' in log
    assert f'continuing from {osp.join(work_dir, "epoch_1.pth")}' in log
    assert 'resumed epoch: 1, iter: 3' in log
    # epoch 2 retrained from epoch 1: the same weights as never stopping
    assert_same_weights(final_weights(resumed), final_weights(reference))


def test_choose_resume_checkpoint_reasons(tmp_path):
    work_dir = str(tmp_path)
    make_runner(work_dir, max_epochs=2).train()
    weights_only = osp.join(work_dir, 'published.pth')
    torch.save({'state_dict': Regressor().state_dict()}, weights_only)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'gone.pth'))
    chosen, skipped = choose_resume_checkpoint(work_dir)
    assert chosen == osp.join(work_dir, 'epoch_2.pth')
    assert skipped[0].endswith("names '" + osp.join(work_dir, 'gone.pth')
                               + "', which does not exist")
    assert 'published.pth' in skipped[1] and 'no training state' in \
        skipped[1]
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        open(osp.join(work_dir, name), 'wb').close()
    chosen, skipped = choose_resume_checkpoint(work_dir)
    assert chosen is None
    assert sum('is empty (0 bytes)' in s for s in skipped) == 2


def test_resume_in_a_fresh_work_dir_starts_quietly(tmp_path):
    runner = make_runner(str(tmp_path), max_epochs=1, resume=True)
    runner.train()
    log = log_text(runner)
    assert 'yet; training starts from the beginning' in log
    assert 'skipped' not in log and 'WARNING - resume' not in log
    assert read_checkpoint(str(tmp_path / 'epoch_1.pth'))['meta']['iter'] \
        == 3


def test_resume_from_a_weights_only_checkpoint_says_so(tmp_path):
    ckpt = str(tmp_path / 'weights.pth')
    torch.save({'state_dict': Regressor().state_dict(), 'meta': {}}, ckpt)
    runner = make_runner(str(tmp_path / 'work'), max_epochs=1, resume=True,
                         load_from=ckpt)
    with pytest.raises(CheckpointError, match='holds no training state .*'
                       'message_hub.*load_from=CHECKPOINT without --resume'):
        runner.train()


@pytest.mark.parametrize('content, reason', [
    (None, 'not found'), (b'', 'is empty (0 bytes)'),
    (b'PK\x03\x04 half a zip', 'cannot be read, it is truncated')])
def test_resume_from_a_named_unusable_checkpoint_says_why(tmp_path, content,
                                                          reason):
    ckpt = tmp_path / 'named.pth'
    if content is not None:
        ckpt.write_bytes(content)
    runner = make_runner(str(tmp_path / 'work'), max_epochs=1, resume=True,
                         load_from=str(ckpt))
    with pytest.raises(CheckpointError) as info:
        runner.train()
    # was "cannot resume from checkpoint '...' not found"
    assert str(info.value).startswith(
        f"cannot resume: checkpoint {str(ckpt)!r}")
    assert reason in str(info.value)



# weights that do not fit ----------------------------------------------------


def test_mismatched_weights_refused_with_counts_and_names(tmp_path):
    model = Regressor(hidden=8)
    other = Regressor(hidden=5).state_dict()
    other['extra.weight'] = torch.zeros(2)
    del other['body.2.bias']
    with pytest.raises(CheckpointError) as info:
        check_weights_fit(model, other, 'other.pth')
    message = str(info.value)
    assert ("3 of another shape (body.0.weight (5, 3) in the checkpoint vs "
            "(8, 3) in the model, body.0.bias (5,) in the checkpoint vs "
            "(8,) in the model, body.2.weight (1, 5) in the checkpoint vs "
            "(1, 8) in the model)") in message
    assert '1 missing from the checkpoint (body.2.bias)' in message
    assert '1 not in the model (extra.weight)' in message
    # the runner's way out, named as such: the export and compaction
    # tools refuse partial weights whatever the config says
    assert 'to train or test with only the tensors that fit, pass ' \
        '--allow-partial to tools/train.py or tools/test.py' in message


def test_runner_refuses_foreign_checkpoint_unless_partial_asked(tmp_path):
    source = Regressor(hidden=8)
    with torch.no_grad():
        source.body[0].weight.copy_(torch.arange(24.).view(8, 3) / 7)
    ckpt = str(tmp_path / 'source.pth')
    state = source.state_dict()
    state['body.2.weight'] = torch.ones(1, 5)  # does not fit
    torch.save({'state_dict': state}, ckpt)

    runner = make_runner(str(tmp_path / 'a'), max_epochs=1)
    with pytest.raises(CheckpointError, match='1 of another shape'):
        runner.load_checkpoint(ckpt)

    partial = make_runner(str(tmp_path / 'b'), max_epochs=1,
                          cfg=dict(allow_partial_checkpoint=True))
    before = partial.model.body[2].weight.clone()
    partial.load_checkpoint(ckpt)
    assert torch.equal(partial.model.body[0].weight, source.body[0].weight)
    assert torch.equal(partial.model.body[2].weight, before)

    model = Regressor(hidden=8)
    load_weights(model, ckpt, allow_partial=True)
    assert torch.equal(model.body[0].weight, source.body[0].weight)
    with pytest.raises(CheckpointError, match='does not fit the model'):
        load_weights(Regressor(hidden=8), ckpt)


def test_visualize_refuses_a_checkpoint_of_another_model(tmp_path):
    from mmdet.registry import MODELS

    from sapool_mmdet.analysis.visualize import load_detector
    stock = Config.fromfile(
        osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_conv.py'))
    ckpt = str(tmp_path / 'conv.pth')
    torch.save({'state_dict': MODELS.build(stock.model).state_dict()}, ckpt)
    config = osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_nlp.py')
    with pytest.raises(CheckpointError) as info:
        load_detector(config, ckpt)
    assert 'missing from the checkpoint (backbone.' in str(info.value)


def test_unreadable_checkpoints_are_named(tmp_path):
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': Regressor().state_dict()}, ckpt)
    truncate(ckpt, 0.3)
    with pytest.raises(CheckpointError,
                       match=r"epoch_1.pth' \(0.0 MiB\) cannot be read"):
        read_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match='not found'):
        read_checkpoint(str(tmp_path / 'missing.pth'))


# one run per work dir ---------------------------------------------------


HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('workdir_lock', sys.argv[1])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
lock.hold_work_dir(sys.argv[2])
print('holding', flush=True)
time.sleep(60)
"""


def test_second_run_in_a_held_work_dir_stops_and_names_the_first(tmp_path):
    work_dir = str(tmp_path / 'work')
    os.makedirs(work_dir)
    module = osp.join(ROOT, 'sapool_mmdet', 'engine', 'workdir_lock.py')
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLDER, module, work_dir],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'holding'
        with pytest.raises(WorkDirBusyError) as info:
            make_runner(work_dir, max_epochs=1)
        message = str(info.value)
        assert f'pid {holder.pid} on ' in message and 'started ' in message
        assert 'choose another --work-dir' in message
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the killed holder leaves nothing stuck
    make_runner(work_dir, max_epochs=1).train()
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def test_runs_of_the_same_second_get_their_own_log(tmp_path, monkeypatch):
    now = time.time()
    monkeypatch.setattr(time, 'time', lambda: now)
    first = make_runner(str(tmp_path), max_epochs=1)
    second = make_runner(str(tmp_path), max_epochs=1)
    assert second.timestamp == first.timestamp + '_1'
    assert first.log_dir != second.log_dir
    assert osp.isdir(first.log_dir) and osp.isdir(second.log_dir)


# one-line errors ----------------------------------------------------------


def one_line_error(function) -> str:
    with pytest.raises(SystemExit) as info:
        run_cli(function)
    message = info.value.code
    assert isinstance(message, str) and '\n' not in message
    assert info.value.__suppress_context__  # no traceback chained
    return message


def test_cli_errors_name_the_file_and_cause(tmp_path):
    config = tmp_path / 'broken.py'
    config.write_text('model = dict(type="X",\n')
    line = one_line_error(lambda: Config.fromfile(str(config)))
    assert line == (f"error: {config}, line 1: syntax error: '(' was "
                    f'never closed')

    results = tmp_path / 'results.json'
    results.write_text(json.dumps([{'bbox': [1, 2, 3, 4]}] * 50)[:300])
    line = one_line_error(lambda: mmengine.load(str(results)))
    assert line.startswith(f'error: {results}: not valid JSON, the file is '
                           f'truncated or corrupt (')

    line = one_line_error(lambda: open(tmp_path / 'no' / 'such.pkl', 'wb'))
    assert line == (f"error: {tmp_path / 'no' / 'such.pkl'}: "
                    f'No such file or directory')


def test_cli_error_for_a_refused_annotation_file(tmp_path):
    # what tools/train.py and tools/test.py meet when the dataset is built
    # from a truncated or inconsistent COCO file: the message of the
    # package's checks, as tools/eval_driving.py prints it, no traceback
    from sapool_mmdet.datasets import load_coco_json
    annotations = tmp_path / 'instances_train.json'
    annotations.write_text('{"images": [{"id": 1, "file_')
    line = one_line_error(lambda: load_coco_json(str(annotations)))
    assert line.startswith(f'error: {annotations} is not valid JSON')
    line = one_line_error(
        lambda: load_coco_json(str(tmp_path / 'missing.json')))
    assert line == (f"error: cannot read {tmp_path / 'missing.json'}: "
                    'No such file or directory')


def test_cli_error_for_permission_denied(tmp_path):
    if os.geteuid() == 0:
        pytest.skip('root is never denied permission on a local folder')
    folder = tmp_path / 'read_only'
    folder.mkdir()
    folder.chmod(0o500)
    target = str(folder / 'out.json')

    def write():
        with atomic_open(target) as f:
            f.write('{}')

    assert one_line_error(write) == \
        f'error: {target}: Permission denied'


def test_train_tool_reports_a_config_syntax_error(tmp_path):
    config = tmp_path / 'broken.py'
    config.write_text('_base_ = []\nmodel = dict(\n')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(config),
         '--work-dir', str(tmp_path / 'work')],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {config}, line 2: syntax error: '(' was never closed")


class RaisingImages(torch.utils.data.Dataset):
    """Reads its images with mmcv's LoadImageFromFile, as mmdet datasets
    do."""

    def __init__(self, paths):
        from mmcv.transforms import LoadImageFromFile
        self.paths, self.load = paths, LoadImageFromFile()

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return self.load(dict(img_path=self.paths[index]))['img'].shape


def truncated_jpeg(path) -> str:
    import cv2
    import numpy as np
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    data = cv2.imencode('.jpg', image)[1].tobytes()
    path.write_bytes(data[:200])  # the header and no image data
    return str(path)


def test_an_image_that_does_not_decode_is_named_in_one_line(tmp_path):
    from mmcv.transforms import LoadImageFromFile

    from sapool_mmdet.compat import UnreadableImageError
    broken = truncated_jpeg(tmp_path / 'broken.jpg')
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    for path in (broken, str(empty)):
        with pytest.raises(UnreadableImageError, match='does not decode'):
            LoadImageFromFile()(dict(img_path=path))
        line = one_line_error(
            lambda: LoadImageFromFile()(dict(img_path=path)))
        assert line == (f'error: {path}: the image does not decode (an '
                        'empty, truncated or non-image file); replace it, '
                        'or drop its entry from the annotation file')
    # mmcv's own switch for skipping unreadable files still skips it
    assert LoadImageFromFile(ignore_empty=True)(dict(img_path=broken)) is None

    # raised in a DataLoader worker, the error reaches the main process
    # with the worker's traceback in its message: still one line
    missing = str(tmp_path / 'missing.jpg')
    for path, cause in ((broken, 'the image does not decode'),
                        (missing, 'No such file or directory')):
        loader = torch.utils.data.DataLoader(RaisingImages([path]),
                                             num_workers=1)
        line = one_line_error(lambda: next(iter(loader)))
        assert line.startswith('error: ') and cause in line
        assert path in line and 'Traceback' not in line


@pytest.mark.slow
def test_train_tool_names_a_training_image_that_does_not_decode(tmp_path):
    from sapool_mmdet.datasets import make_synthetic_coco
    data_root = tmp_path / 'data'
    make_synthetic_coco(str(data_root), num_train=2, num_val=1,
                        image_size=(96, 96), seed=1)
    broken = sorted((data_root / 'train').glob('*.jpg'))[1]
    truncated_jpeg(broken)
    config = tiny_demo_config(tmp_path / 'tiny.py', data_root,
                              'train_cfg = dict(max_epochs=1)\n')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
         '--work-dir', str(tmp_path / 'work'), '--cfg-options',
         'train_dataloader.num_workers=1'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'error: {broken}: the image does not decode')


def test_fixes_are_applied_once():
    from mmengine.runner import Runner as MMRunner

    from sapool_mmdet.engine import apply_durability_fixes
    setup_env = MMRunner.setup_env
    apply_durability_fixes()
    assert MMRunner.setup_env is setup_env
