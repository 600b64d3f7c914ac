"""tools/visualize_pooling.py and the functions behind it, on freshly
initialised detectors and a synthetic image."""
import runpy
import sys
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.runner.checkpoint import save_checkpoint
from PIL import Image

from sapool_mmdet.analysis import build_from_config, load_config
from sapool_mmdet.analysis.visualize import (compute_image_maps,
                                             find_pooling_layers,
                                             load_detector)
from sapool_mmdet.pooling import POOLING, WeightedPool, build_pooling

ROOT = Path(__file__).resolve().parents[1]
TOOL = str(ROOT / 'tools' / 'visualize_pooling.py')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
SIZE = 64
CLASSES = ('person', 'bicycle', 'car', 'motorcycle', 'bus', 'train',
           'truck', 'traffic light')

# SSDlite-MobileNetV2 at 64x64 with a different weighted pooling method
# in each down-sampling stage and Gaussian pooling (no weight map) after
# the stem.
MIXED_CONFIG = f"""
_base_ = {str(ROOT / 'configs' / 'ssd_mbv2_nlp.py')!r}
model = dict(
    backbone=dict(
        stem_pooling=dict(type='GaussianPool'),
        pooling=[
            None,
            dict(type='NLPool', patch_size=4),
            dict(type='LIPPool'),
            dict(type='SoftPool'),
            None,
            dict(type='SubspaceAttnPool'),
            None,
        ]))
test_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=({SIZE}, {SIZE}), keep_ratio=False),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor')),
    ]))
"""


def run_tool(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', [TOOL, *map(str, args)])
    runpy.run_path(TOOL, run_name='__main__')


def fresh_checkpoint(config: str, path: Path) -> str:
    """Save a freshly initialised detector as an mmengine checkpoint."""
    torch.manual_seed(0)
    model = build_from_config(load_config(config), 'detector')
    save_checkpoint({'state_dict': model.state_dict(),
                     'meta': {'dataset_meta': {'classes': CLASSES}}},
                    str(path))
    return str(path)


@pytest.fixture
def mixed(tmp_path):
    config = tmp_path / 'ssd_mixed.py'
    config.write_text(MIXED_CONFIG)
    checkpoint = fresh_checkpoint(str(config), tmp_path / 'mixed.pth')
    image = np.zeros((96, 160, 3), np.uint8)
    image[20:70, 40:110] = (40, 60, 220)
    mmcv.imwrite(image, str(tmp_path / 'street.jpg'))
    return str(config), checkpoint, str(tmp_path / 'street.jpg')


def test_find_pooling_layers_splits_every_registered_method():
    names = sorted(POOLING.module_dict)
    model = nn.ModuleDict({
        name: build_pooling(dict(type=name), 8, 2) for name in names
    })
    layers = find_pooling_layers(model)
    assert [n for n, _ in layers.weighted] == [
        n for n in names if issubclass(POOLING.get(n), WeightedPool)
    ]
    assert [n for n, _ in layers.unweighted] == [
        n for n in names if not issubclass(POOLING.get(n), WeightedPool)
    ]
    assert {'NLPool', 'LIPPool', 'SoftPool', 'SubspaceAttnPool'} <= {
        n for n, _ in layers.weighted
    }
    assert 'no weight map for' in layers.unweighted_message()


def test_weight_maps_and_gradcam(mixed):
    config, checkpoint, image = mixed
    model, cfg, classes = load_detector(config, checkpoint)
    assert classes == CLASSES
    layers = find_pooling_layers(model)
    maps = compute_image_maps(model, cfg, layers, image, gradcam=True)
    assert maps.image.shape == (SIZE, SIZE, 3)
    assert maps.layer_types == {
        'backbone.layer2.pool': 'NLPool',
        'backbone.layer3.pool': 'LIPPool',
        'backbone.layer4.pool': 'SoftPool',
        'backbone.layer6.pool': 'SubspaceAttnPool',
    }
    # The stem pooling halves 64 to 32; with inner-stage pooling each map
    # has the size of the stage's first block output (the layer's input).
    sizes = {name: values.shape for name, values in maps.weight_maps.items()}
    assert sizes == {
        'backbone.layer2.pool': (32, 32),
        'backbone.layer3.pool': (16, 16),
        'backbone.layer4.pool': (8, 8),
        'backbone.layer6.pool': (4, 4),
    }
    for values in maps.weight_maps.values():
        assert np.isfinite(values).all() and (values >= 0).all()
    assert {name: values.shape for name, values in maps.gradcam.items()} == {
        'backbone.layer2.pool': (16, 16),
        'backbone.layer3.pool': (8, 8),
        'backbone.layer4.pool': (4, 4),
        'backbone.layer6.pool': (2, 2),
    }
    # The top detection's score, recomputed differentiably from the head's
    # raw scores, is the one predict reports.
    data = model.predict(*_batch(model, cfg, image), rescale=False)
    box, label, score = maps.detection
    assert score == pytest.approx(float(data[0].pred_instances.scores.max()))


def _batch(model, cfg, image):
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.dataset import Compose, pseudo_collate
    data = Compose(get_test_pipeline_cfg(cfg))(dict(img_path=image, img_id=0))
    batch = model.data_preprocessor(pseudo_collate([data]), False)
    return batch['inputs'], batch['data_samples']


def test_tool_writes_one_png_per_image(mixed, tmp_path, monkeypatch, capsys):
    config, checkpoint, image = mixed
    second = tmp_path / 'other' / 'street.jpg'
    second.parent.mkdir()
    second.write_bytes(Path(image).read_bytes())
    out = tmp_path / 'vis'
    run_tool(monkeypatch, config, checkpoint, image, second, '--out', out,
             '--gradcam')
    stdout = capsys.readouterr().out
    assert 'no weight map for backbone.stem_pool (GaussianPool)' in stdout
    pngs = sorted(out.iterdir())
    assert [p.name for p in pngs] == ['street_1_pooling.png',
                                      'street_pooling.png']
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(png) as picture:
            # two rows (weight maps, Grad-CAM) of 1 + 4 panels
            assert picture.format == 'PNG'
            assert picture.size == (1500, 640)


def test_config_without_weight_maps_fails_clearly(tmp_path):
    config = str(ROOT / 'configs' / 'ssd_mbv2_gaussian.py')
    checkpoint = fresh_checkpoint(config, tmp_path / 'gaussian.pth')
    image = tmp_path / 'img.png'
    mmcv.imwrite(np.zeros((8, 8, 3), np.uint8), str(image))
    from sapool_mmdet.analysis.visualize import visualize_pooling
    with pytest.raises(ValueError, match='no pooling layer with a weight '
                       r'map.*backbone.layer2.pool \(GaussianPool\)'):
        visualize_pooling(config, checkpoint, [str(image)],
                          str(tmp_path / 'out'), progress=False)


def test_tool_missing_files_fail_clearly(mixed, tmp_path, monkeypatch):
    config, checkpoint, image = mixed
    for args, message in [
        ((config, checkpoint, tmp_path / 'nope.jpg'), 'image'),
        ((config, tmp_path / 'nope.pth', image), 'checkpoint'),
        ((tmp_path / 'nope.py', checkpoint, image), 'config file'),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_tool(monkeypatch, *args, '--out', tmp_path / 'out')
        assert f'error: {message}' in str(exit_info.value)
        assert 'not found' in str(exit_info.value)
    # a file that is not an image: refused before anything is written
    not_image = tmp_path / 'not_an_image.jpg'
    not_image.write_text('not an image')
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, config, checkpoint, not_image, '--out',
                 tmp_path / 'out')
    assert str(exit_info.value) == (
        f"error: image '{not_image}' cannot be decoded: it is not an image "
        f'file, or it is truncated')
    assert not (tmp_path / 'out').exists()


def test_load_detector_reverts_syncbn_and_names_classes(mixed, tmp_path):
    """mmdet's init_detector builds the model: SyncBN becomes BN (no process
    group needed) and the checkpoint's weights are loaded. A checkpoint
    without class names gets the config's eight, not COCO's 80."""
    config, checkpoint, _ = mixed
    syncbn = tmp_path / 'ssd_syncbn.py'
    syncbn.write_text(f"_base_ = {config!r}\n"
                      "model = dict(backbone=dict(norm_cfg=dict("
                      "type='SyncBN')))\n")
    weights = torch.load(checkpoint, map_location='cpu',
                         weights_only=False)['state_dict']
    bare = tmp_path / 'bare.pth'
    torch.save({'state_dict': weights}, str(bare))
    model, cfg, classes = load_detector(str(syncbn), str(bare))
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    assert not model.training
    assert classes == CLASSES == tuple(model.dataset_meta['classes'])
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[name])


def test_load_detector_does_not_claim_coco_classes(mixed, recwarn):
    """init_detector, called without a checkpoint, warns that it uses
    COCO's classes; the checkpoint loaded after it decides them."""
    config, checkpoint, _ = mixed
    _, _, classes = load_detector(config, checkpoint)
    assert classes == CLASSES
    assert not [w for w in recwarn if 'COCO classes' in str(w.message)]
