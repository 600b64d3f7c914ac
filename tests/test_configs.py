"""Every config in configs/, configs/demo/, configs/official/ and
configs/ablation/ (found by globbing, so new ones are covered
automatically): it loads, holds the eight driving classes, builds, trains
one step and predicts on a tiny synthetic batch, and its anchor/prior
strides are the real strides of the features they run on.
The grid's file names say what the files contain."""
import copy
import functools
import math
import re
from pathlib import Path

import pytest
import torch
from mmdet.registry import DATASETS, METRICS, MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import init_default_scope

from sapool_mmdet.datasets import DRIVING_CLASSES
from tiny_demo import synthetic_batch

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
GRID = sorted(CONFIG_DIR.glob('*.py'))
CONFIGS = GRID + [path for folder in ('demo', 'official', 'ablation')
                  for path in sorted(CONFIG_DIR.glob(f'{folder}/*.py'))]
TINY_SIZE = 64  # side of the synthetic training/predict images
TINY_PER_IMAGE = 64  # proposals, sampled RoIs and detections per image

# The detector grid of the paper (Sec. 6.1, Table 4) that the configs cover.
EXPECTED_GRID = [
    *[f'ssd_mbv2_{m}' for m in ('conv', 'lip', 'gaussian', 'rnnpool', 'nlp')],
    *[f'ssd_mbv2_{m}_s{s}' for m in ('conv', 'nlp') for s in (2, 4)],
    *[f'ssd_mbv2-035_{m}' for m in ('conv', 'nlp')],
    *[f'ssd_r18_{m}' for m in ('conv', 'lip', 'gaussian', 'nlp')],
    *[f'yolov3_{b}_{m}' for b in ('mbv2', 'r18')
      for m in ('conv', 'lip', 'gaussian', 'nlp')],
    *[f'faster-rcnn_r18_{m}' for m in ('conv', 'lip', 'gaussian', 'nlp')],
    *[f'faster-rcnn_r50_{m}' for m in ('conv', 'nlp')],
]
NAME = re.compile(r'(?P<detector>ssd|yolov3|faster-rcnn)_'
                  r'(?P<backbone>mbv2|mbv2-035|r18|r50)_'
                  r'(?P<method>conv|lip|gaussian|rnnpool|nlp)'
                  r'(?:_s(?P<s1>[24]))?(?P<cp>_cp)?')
DETECTORS = {  # model type, head type, test input (width, height)
    'ssd': ('SingleStageDetector', 'SSDHead', (320, 320)),
    'yolov3': ('YOLOV3', 'YOLOV3Head', (608, 608)),
    'faster-rcnn': ('FasterRCNN', 'RPNHead', (1333, 800)),
}
BACKBONES = {  # type, arguments, pool position
    'mbv2': ('NLPoolMobileNetV2', dict(widen_factor=1.0), 'inner'),
    'mbv2-035': ('NLPoolMobileNetV2', dict(widen_factor=0.35), 'inner'),
    'r18': ('NLPoolResNet', dict(depth=18), 'outer'),
    'r50': ('NLPoolResNet', dict(depth=50), 'outer'),
}
# Where a config pools elsewhere than its backbone's usual position: as the
# authors' run does (their resnet18_v2 pools inner).
POSITION_EXCEPTIONS = {'faster-rcnn_r18_gaussian': 'inner'}
METHODS = {'lip': 'LIPPool', 'gaussian': 'GaussianPool', 'rnnpool': 'RNNPool',
           'nlp': 'NLPool'}  # and 'conv': the stock strided convs


def config_id(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> Config:
    return Config.fromfile(str(path))


def load(path: Path) -> Config:
    """The parsed config, parsed once per session (parsing the mmdet base
    chain costs about a second); a copy, as the tests modify it."""
    return copy.deepcopy(_parse(path))


def build(cfg: Config):
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


def walk(node):
    """Every (key, value) pair in a nested config."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from walk(value)


def innermost_dataset(dataloader: dict) -> dict:
    dataset = dataloader['dataset']
    while 'dataset' in dataset:  # RepeatDataset and other wrappers
        dataset = dataset['dataset']
    return dataset


def eval_input_size(cfg: Config) -> tuple:
    """(width, height) of the Resize step of the test pipeline."""
    pipeline = innermost_dataset(cfg.test_dataloader)['pipeline']
    resize, = [t for t in pipeline if t['type'] == 'Resize']
    return tuple(resize['scale'])


# The NLPool layers every NLPool config of the grid and the demo resolves
# to, stage by stage (None: the stock strided conv), written out here so
# that a change of a shared base file shows up as a change of these
# configs: patch sizes per stage, and the paper's Table 1 settings (2 heads,
# embedding ratio 1; 0.25 for ResNet50).
MBV2_PATCHES = (None, 8, 4, 2, None, 1, None)
NLPOOL_SETTINGS = {  # config: (patch size per stage, embed_ratio)
    'ssd_mbv2_nlp': (MBV2_PATCHES, 1.0),
    'ssd_mbv2_nlp_cp': (MBV2_PATCHES, 1.0),
    'ssd_mbv2_nlp_s2': ((8, 8, 4, 2, None, 1, None), 1.0),
    'ssd_mbv2_nlp_s4': ((8, 8, 4, 2, None, 1, None), 1.0),
    'ssd_mbv2-035_nlp': (MBV2_PATCHES, 1.0),
    'ssd_r18_nlp': ((None, 4, 2, 1), 1.0),
    'yolov3_mbv2_nlp': ((None, 8, 8, 4, None, 2, None), 1.0),
    'yolov3_r18_nlp': ((None, 8, 4, 2), 1.0),
    'faster-rcnn_r18_nlp': ((None, 8, 4, 2), 1.0),
    'faster-rcnn_r50_nlp': ((None, 8, 4, 2), 0.25),
    'demo/ssd_mbv2_nlp': (MBV2_PATCHES, 1.0),
    'demo/ssd_mbv2_nlp_cp': (MBV2_PATCHES, 1.0),
}


def test_nlpool_settings_of_every_nlpool_config():
    pinned = {name for name in NLPOOL_SETTINGS}
    found = {str(path.relative_to(CONFIG_DIR))[:-3] for path in CONFIGS
             if '_nlp' in path.stem and path.parent.name in ('configs',
                                                             'demo')}
    assert found == pinned, 'pin the NLPool settings of new configs here'
    for name, (patches, ratio) in NLPOOL_SETTINGS.items():
        cfg = Config.fromfile(CONFIG_DIR / f'{name}.py')
        expected = [None if p is None else dict(
            type='NLPool', embed_ratio=ratio, num_heads=2, patch_size=p)
            for p in patches]
        assert [None if entry is None else dict(entry)
                for entry in cfg.model.backbone.pooling] == expected, name


def test_configs_are_found():
    missing = set(EXPECTED_GRID) - {p.stem for p in GRID}
    assert not missing, f'configs of the grid missing: {sorted(missing)}'


@pytest.mark.parametrize('path', GRID, ids=config_id)
def test_file_name_says_what_the_config_holds(path):
    match = NAME.fullmatch(path.stem)
    assert match, (f'{path.name} does not follow '
                   '{detector}_{backbone}_{method}[_s{s1}][_cp].py')
    cfg = load(path)
    model_type, head_type, input_size = DETECTORS[match['detector']]
    assert cfg.model.type == model_type
    assert head_type in {v for k, v in walk(cfg.model) if k == 'type'}
    assert eval_input_size(cfg) == input_size
    assert bool(match['cp']) == ('ChannelPruningHook' in str(
        cfg.get('custom_hooks')))

    init_default_scope('mmdet')
    backbone = MODELS.build(cfg.model.backbone)
    backbone_type, arguments, position = BACKBONES[match['backbone']]
    assert type(backbone).__name__ == backbone_type
    for name, value in arguments.items():
        assert getattr(backbone, name) == value
    assert backbone.strides[0] == int(match['s1'] or 1)

    # 'conv' keeps the stock strided convs, except where the stock block
    # cannot take the stride (ConvPool then); every other method pools in
    # every down-sampling stage, at the backbone's pool position
    pooled = {pool['type'] for pool in backbone.stage_pooling if pool}
    if match['method'] == 'conv':
        assert pooled <= {'ConvPool'}
    else:
        assert pooled == {METHODS[match['method']]}
        assert all(pool for pool, stride in zip(backbone.stage_pooling,
                                                 backbone.strides)
                   if stride > 1)
        assert backbone.pool_position == POSITION_EXCEPTIONS.get(
            path.stem, position)


# ImageNet weights as mmdet's recipe for each detector: torchvision's for
# ResNet, mmdet's MobileNetV2 for YOLOv3; SSDlite trains from scratch.
def recipe_checkpoint(path: Path, cfg: Config):
    backbone = cfg.model.backbone
    if backbone.type == 'NLPoolResNet':
        return f'torchvision://resnet{backbone.depth}'
    if cfg.model.type == 'YOLOV3':
        return 'open-mmlab://mmdet/mobilenet_v2'
    return None


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_is_for_the_driving_classes_and_recipe_weights(path):
    cfg = load(path)
    num_classes = [v for k, v in walk(cfg.model) if k == 'num_classes']
    assert num_classes and set(num_classes) == {len(DRIVING_CLASSES)}
    for split in ('train', 'val', 'test'):
        dataset = innermost_dataset(cfg[f'{split}_dataloader'])
        dataset_class = DATASETS.get(dataset['type'])
        assert dataset_class is not None, dataset['type']
        classes = dataset.get('metainfo', {}).get(
            'classes', dataset_class.METAINFO['classes'])
        assert tuple(classes) == DRIVING_CLASSES
        evaluator = cfg.get(f'{split}_evaluator')
        if evaluator is not None:
            assert METRICS.get(evaluator['type']) is not None
    checkpoint = recipe_checkpoint(path, cfg)
    if checkpoint is not None:
        assert cfg.model.backbone.init_cfg == dict(type='Pretrained',
                                                   checkpoint=checkpoint)
    pretrained = [value for key, value in walk(cfg.model)
                  if key == 'type' and value == 'Pretrained']
    assert len(pretrained) == (checkpoint is not None)
    assert not any(key == 'pretrained' and value
                   for key, value in walk(cfg.model))


@pytest.fixture(scope='session')
def stock_checkpoints(tmp_path_factory):
    """Locally written stand-ins for the ImageNet checkpoints the configs
    name (tests never download): a stock mmdet backbone's state dict plus
    the classifier keys the real files have."""
    from mmdet.models.backbones import MobileNetV2, ResNet
    stock = {
        'torchvision://resnet18': lambda: ResNet(depth=18),
        'torchvision://resnet50': lambda: ResNet(depth=50),
        'open-mmlab://mmdet/mobilenet_v2':
        lambda: MobileNetV2(out_indices=(7, )),
    }
    written = {}

    def get(name: str):
        if name not in written:
            torch.manual_seed(0)
            state = dict(stock[name]().state_dict(),
                         **{'fc.weight': torch.randn(3, 2)})
            path = tmp_path_factory.mktemp('imagenet') / 'stock.pth'
            torch.save(state, path)
            written[name] = (str(path), state)
        return written[name]

    return get


def shrink(cfg: Config) -> Config:
    """Cap the proposals, sampled RoIs/anchors and detections per image:
    RoI heads cost per RoI, not per pixel, so a tiny image alone does not
    make a training step cheap."""

    def cap(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ('num', 'nms_pre', 'max_per_img'):
                    node[key] = min(value, TINY_PER_IMAGE)
                else:
                    cap(value)

    cap(cfg.model.get('train_cfg'))
    cap(cfg.model.get('test_cfg'))
    return cfg


def find_unused_parameters(cfg: Config) -> bool:
    """What the config gives DDP as ``find_unused_parameters`` (mmengine
    reads ``model_wrapper_cfg`` first, then the top-level key)."""
    wrapper = cfg.get('model_wrapper_cfg') or {}
    return wrapper.get('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_trains_one_step_and_predicts(path, stock_checkpoints):
    torch.manual_seed(0)
    cfg = shrink(load(path))
    assert find_unused_parameters(cfg) is False
    init_cfg = cfg.model.backbone.get('init_cfg') or {}
    pretrained = init_cfg.get('type') == 'Pretrained'
    if pretrained:  # ImageNet start through the config's own init_cfg
        init_cfg.checkpoint, stock = stock_checkpoints(init_cfg.checkpoint)
    model = build(cfg)
    model.init_weights()
    if pretrained:
        state = model.backbone.state_dict()
        for key, value in state.items():
            if key in stock:
                assert torch.equal(value, stock[key]), key
            else:  # only the new pooling layers start untrained
                assert key.startswith('stem_pool.') or '.pool.' in key, key
    model.train()
    data = model.data_preprocessor(synthetic_batch(size=TINY_SIZE),
                                   training=True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    # DDP with find_unused_parameters=False (mmengine's default) needs every
    # trainable parameter in the graph of every step.
    without_grad = [name for name, param in model.named_parameters()
                    if param.requires_grad and param.grad is None]
    assert not without_grad, f'parameters without gradient: {without_grad}'
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert param.grad.isfinite().all(), name

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(synthetic_batch(size=TINY_SIZE),
                                       training=False)
        results = model(**data, mode='predict')
    assert len(results) == 2
    for result in results:
        pred = result.pred_instances
        assert pred.bboxes.shape == (len(pred), 4)
        assert pred.scores.isfinite().all()
        assert pred.labels.ge(0).all()
        assert pred.labels.lt(len(DRIVING_CLASSES)).all()


def declared_strides(model) -> dict:
    """Strides (w, h) per level that the heads assume: anchor/prior
    generators (every level) and RoI extractors / YOLO heads
    (featmap_strides, the first levels)."""
    declared = {}
    for name, module in model.named_modules():
        generator = getattr(module, 'prior_generator', None)
        if generator is not None:
            declared[f'{name}.prior_generator'] = [
                tuple(s) for s in generator.strides]
        strides = getattr(module, 'featmap_strides', None)
        if strides is not None:
            declared[f'{name}.featmap_strides'] = [(s, s) for s in strides]
    return declared


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_anchor_strides_are_the_feature_strides(path):
    """At the config's own test size (padded as its data preprocessor pads),
    each level's map has the size a map of the declared stride has:
    ceil(H / stride) x ceil(W / stride). Shapes only: the model runs on the
    meta device."""
    cfg = load(path)
    model = build(cfg).eval()
    width, height = eval_input_size(cfg)
    batch = dict(inputs=[torch.zeros(3, height, width, dtype=torch.uint8)],
                 data_samples=[DetDataSample()])
    inputs = model.data_preprocessor(batch, training=False)['inputs']
    padded_h, padded_w = inputs.shape[-2:]
    with torch.no_grad():
        features = model.to('meta').extract_feat(inputs.to('meta'))
    sizes = [tuple(f.shape[-2:]) for f in features]
    declared = declared_strides(model)
    assert any(k.endswith('prior_generator') for k in declared)
    for name, strides in declared.items():
        if name.endswith('prior_generator'):
            assert len(strides) == len(sizes), name
        expected = [(math.ceil(padded_h / sh), math.ceil(padded_w / sw))
                    for sw, sh in strides]
        assert sizes[:len(strides)] == expected, (
            f'{name}: declared strides {strides} but the {padded_w}x'
            f'{padded_h} input gives feature maps {sizes}')
