"""Where a pooling layer puts its weight: the weight map pi(x) of every
weighted pooling layer on an image, and Grad-CAM of the top detection at
each of their outputs (Chen et al., WACV 2023, Sec. 6.3 and Fig. 4).

The weight map is what :meth:`WeightedPool.pooling_weights` returns for the
layer's input in the image's forward pass, averaged over channels,
upsampled to the network input and overlaid on it. Grad-CAM (Selvaraju et
al., ICCV 2017) weighs each channel of the layer's output by the mean
gradient of the top detection's score over the map, sums the channels and
keeps the positive part.
"""
import os
import os.path as osp
import sys
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.apis import init_detector
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.utils import get_test_pipeline_cfg
from mmengine.dataset import Compose, pseudo_collate
from mmengine.utils import ProgressBar

from ..checkpoint import load_weights
from ..fileio import atomic_open
from ..pooling import POOLING, WeightedPool
from .config import check_device

__all__ = ['PoolingLayers', 'find_pooling_layers', 'load_detector',
           'ImageMaps', 'compute_image_maps', 'render_image_maps',
           'visualize_pooling']


@dataclass
class PoolingLayers:
    """The pooling layers of a model.

    Attributes:
        weighted (list): (name, module) of every :class:`WeightedPool`.
        unweighted (list): (name, type name) of the other registered pooling
            methods (MaxPool, GaussianPool, RNNPool...): no weight map.
    """
    weighted: List[Tuple[str, WeightedPool]]
    unweighted: List[Tuple[str, str]]

    def unweighted_message(self) -> str:
        """Why the unweighted layers get no panel; '' if there are none."""
        if not self.unweighted:
            return ''
        names = ', '.join(f'{name} ({kind})' for name, kind in self.unweighted)
        return (f'no weight map for {names}: only WeightedPool methods '
                f'({", ".join(weighted_pooling_types())}) compute pi(x)')


def weighted_pooling_types() -> List[str]:
    """Registered pooling types that have a weight map."""
    return sorted(name for name, cls in POOLING.module_dict.items()
                  if issubclass(cls, WeightedPool))


def find_pooling_layers(model: nn.Module) -> PoolingLayers:
    """Sort the registered pooling modules in ``model`` by whether they
    compute a weight map."""
    registered = tuple(POOLING.module_dict.values())
    weighted, unweighted = [], []
    for name, module in model.named_modules():
        if isinstance(module, WeightedPool):
            weighted.append((name, module))
        elif isinstance(module, registered):
            unweighted.append((name, type(module).__name__))
    return PoolingLayers(weighted, unweighted)


def _check_file(path: str, what: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} {path!r} not found')


def _check_image(path: str) -> None:
    """A missing or undecodable image, refused before the model is
    built and before anything is written."""
    _check_file(path, 'image')
    import mmcv
    if mmcv.imread(path) is None:
        raise ValueError(f'image {path!r} cannot be decoded: it is not an '
                         f'image file, or it is truncated')


def _head_num_classes(model: nn.Module) -> Optional[int]:
    """Classes of the detector's box head (one- or two-stage), if known."""
    roi_head = getattr(model, 'roi_head', None)
    for head in (getattr(model, 'bbox_head', None),
                 getattr(roi_head, 'bbox_head', None)):
        if isinstance(getattr(head, 'num_classes', None), int):
            return head.num_classes
    return None


def load_detector(config: str, checkpoint: str, device: str = 'cpu'
                  ) -> Tuple[nn.Module, object, Sequence[str]]:
    """Load a detector: build the config's model with
    ``mmdet.apis.init_detector`` (its ``custom_imports`` imported, SyncBN
    reverted to BN), load an mmengine checkpoint through
    :func:`sapool_mmdet.checkpoint.load_weights` (one that does not fit is
    refused) and set ``dataset_meta``.

    The class names are those the checkpoint carries. A checkpoint without
    them makes ``init_detector`` fall back to COCO's 80; when that count
    does not match the box head and the config's test dataset names as
    many classes as the head has, those are used instead.

    Args:
        config (str): mmdet config file.
        checkpoint (str): mmengine checkpoint of that config's detector.
        device (str): Device to put the detector on. Default: 'cpu'.

    Returns:
        tuple: (detector in eval mode, its config, class names).
    """
    _check_file(config, 'config file')
    _check_file(checkpoint, 'checkpoint')
    # palette: no drawing of boxes here, so the test dataset need not be
    # built to find one. Without a checkpoint init_detector warns that it
    # falls back to COCO's classes (after resetting the warning filters);
    # ours is loaded below and its classes replace them, so that one
    # warning would mislead: the others are passed on.
    with warnings.catch_warnings(record=True) as caught:
        model = init_detector(config, None, palette='random', device=device)
    for warning in caught:
        if not str(warning.message).startswith('checkpoint is None'):
            warnings.warn_explicit(warning.message, warning.category,
                                   warning.filename, warning.lineno)
    # our reader: a checkpoint of another model is refused, not loaded
    # with a warning per tensor as init_detector would
    meta = load_weights(model, checkpoint).get('meta', {})
    if 'dataset_meta' in meta:
        model.dataset_meta = dict(meta['dataset_meta'])
    elif 'CLASSES' in meta:  # checkpoints of mmdet 2.x
        model.dataset_meta = {'classes': meta['CLASSES']}
    classes = tuple(model.dataset_meta.get('classes', ()))
    num_classes = _head_num_classes(model)
    if num_classes is not None and len(classes) != num_classes:
        dataset = model.cfg.get('test_dataloader', {}).get('dataset', {})
        named = tuple(dataset.get('metainfo', {}).get('classes', ()))
        if len(named) == num_classes:
            classes = named
            model.dataset_meta['classes'] = classes
    return model, model.cfg, classes


@dataclass
class ImageMaps:
    """The pictures of one image.

    Attributes:
        image (ndarray): The network input image, (H, W, 3) RGB uint8,
            without the batch padding.
        weight_maps (dict): Layer name -> (h, w) channel-averaged pi(x).
        layer_types (dict): Layer name -> pooling type name.
        gradcam (dict): Layer name -> (h, w) Grad-CAM map, or None when no
            Grad-CAM was asked for or nothing was detected.
        detection (tuple, optional): (box x1 y1 x2 y2, label, score) of the
            top detection, in network-input pixels.
        padded_shape (tuple): (H, W) of the padded network input the maps
            cover.
    """
    image: np.ndarray
    weight_maps: Dict[str, np.ndarray]
    layer_types: Dict[str, str]
    padded_shape: Tuple[int, int]
    gradcam: Optional[Dict[str, np.ndarray]] = None
    detection: Optional[Tuple[np.ndarray, int, float]] = None
    notes: List[str] = field(default_factory=list)


def _prepare(model: nn.Module, cfg, image_path: str) -> Tuple[dict,
                                                               np.ndarray]:
    """Run the config's test pipeline and the model's preprocessor."""
    pipeline = Compose(get_test_pipeline_cfg(cfg))
    data = pipeline(dict(img_path=image_path, img_id=0))
    # LoadImageFromFile reads BGR; the packed image is (3, H, W).
    image = data['inputs'].permute(1, 2, 0).numpy()[..., ::-1].copy()
    batch = model.data_preprocessor(pseudo_collate([data]), False)
    return batch, image


class _Capture:
    """Forward hooks that keep each layer's latest input and output."""

    def __init__(self, layers: Sequence[Tuple[str, nn.Module]]) -> None:
        self.inputs: Dict[str, torch.Tensor] = {}
        self.outputs: Dict[str, torch.Tensor] = {}
        self.handles = [
            module.register_forward_hook(self._hook(name))
            for name, module in layers
        ]

    def _hook(self, name: str):
        def hook(module, args, output):
            self.inputs[name] = args[0]
            self.outputs[name] = output
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _dense_head_top_score(model: nn.Module, inputs: torch.Tensor,
                          expected: float) -> torch.Tensor:
    """The top detection's score, differentiable, for dense heads whose
    ``predict_by_feat`` detaches the scores (SSD, RetinaNet...).

    NMS always keeps the highest-scoring candidate, so the top detection's
    score is the largest foreground class score over all priors: softmax
    with the background as the last class, or sigmoid.
    """
    head = model.bbox_head
    cls_scores = head(model.extract_feat(inputs))[0]
    best = []
    for level in cls_scores:
        scores = level.permute(0, 2, 3, 1).reshape(-1, head.cls_out_channels)
        if head.use_sigmoid_cls:
            scores = scores.sigmoid()
        else:
            scores = scores.softmax(-1)[:, :-1]
        best.append(scores.max())
    score = torch.stack(best).max()
    if not torch.isclose(score, score.new_tensor(expected), atol=1e-5):
        raise RuntimeError(
            f'the largest class score of {type(head).__name__} '
            f'({score.item():.6f}) is not the top detection\'s score '
            f'({expected:.6f}); Grad-CAM cannot locate it')
    return score


def _gradcam(activation: torch.Tensor,
             gradient: Optional[torch.Tensor]) -> np.ndarray:
    if gradient is None:
        return np.zeros(activation.shape[-2:], dtype=np.float32)
    channel_weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((channel_weights * activation).sum(dim=1))[0]
    return cam.detach().cpu().numpy()


def compute_image_maps(model: nn.Module, cfg, layers: PoolingLayers,
                       image_path: str, gradcam: bool = False) -> ImageMaps:
    """Weight maps (and Grad-CAM) of every weighted pooling layer on one
    image.

    Args:
        model (nn.Module): mmdet detector in eval mode.
        cfg: Its config (for the test pipeline).
        layers (PoolingLayers): From :func:`find_pooling_layers`.
        image_path (str): Image file.
        gradcam (bool): Also compute Grad-CAM of the top detection's score
            at each layer's output. Default: False.
    """
    batch, image = _prepare(model, cfg, image_path)
    inputs, data_samples = batch['inputs'], batch['data_samples']
    capture = _Capture(layers.weighted)
    try:
        with torch.set_grad_enabled(gradcam):
            results = model.predict(inputs, data_samples, rescale=False)
        with torch.no_grad():
            weight_maps = {
                name: module.pooling_weights(capture.inputs[name]).mean(
                    dim=1)[0].cpu().numpy()
                for name, module in layers.weighted
            }
        maps = ImageMaps(image, weight_maps,
                         {n: type(m).__name__ for n, m in layers.weighted},
                         tuple(inputs.shape[-2:]))
        if not gradcam:
            return maps
        instances = results[0].pred_instances
        if len(instances.scores) == 0:
            maps.notes.append('no detection: no Grad-CAM')
            return maps
        top = int(instances.scores.argmax())
        score = instances.scores[top]
        if not score.requires_grad:
            if not isinstance(getattr(model, 'bbox_head', None),
                              BaseDenseHead):
                raise RuntimeError(
                    f'{type(model).__name__} returns detached scores; '
                    f'Grad-CAM supports dense heads and detectors whose '
                    f'predict keeps the graph')
            with torch.enable_grad():
                score = _dense_head_top_score(model, inputs, score.item())
        names = [name for name, _ in layers.weighted]
        activations = [capture.outputs[name] for name in names]
        gradients = torch.autograd.grad(score, activations,
                                        allow_unused=True)
        maps.gradcam = {
            name: _gradcam(act, grad)
            for name, act, grad in zip(names, activations, gradients)
        }
        maps.detection = (instances.bboxes[top].detach().cpu().numpy(),
                          int(instances.labels[top]), score.item())
        return maps
    finally:
        capture.remove()


def _normalise(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low <= 0:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _overlay_map(values: np.ndarray, padded_shape: Tuple[int, int],
                 image_shape: Tuple[int, int]) -> np.ndarray:
    """Upsample a map that covers the padded input and crop the image."""
    tensor = torch.from_numpy(np.ascontiguousarray(values, np.float32))
    upsampled = F.interpolate(tensor[None, None], size=padded_shape,
                              mode='bilinear', align_corners=False)[0, 0]
    return _normalise(upsampled[:image_shape[0], :image_shape[1]].numpy())


def render_image_maps(maps: ImageMaps, path: str,
                      class_names: Sequence[str] = ()) -> None:
    """Draw the image and one panel per layer (a second row with Grad-CAM
    when present) and save a PNG (matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    names = list(maps.weight_maps)
    rows = 1 if maps.gradcam is None else 2
    columns = 1 + len(names)
    figure = Figure(figsize=(3 * columns, 3.2 * rows), layout='constrained')
    FigureCanvasAgg(figure)
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    image_shape = maps.image.shape[:2]
    axes[0, 0].imshow(maps.image)
    axes[0, 0].set_title(f'input {image_shape[0]}x{image_shape[1]}',
                         fontsize=8)
    for column, name in enumerate(names, start=1):
        weights = maps.weight_maps[name]
        axes[0, column].imshow(maps.image)
        axes[0, column].imshow(
            _overlay_map(weights, maps.padded_shape, image_shape),
            cmap='jet', alpha=0.5)
        # Each panel is min-max normalised; the title keeps the true range.
        axes[0, column].set_title(
            f'{name}\n{maps.layer_types[name]} pi(x), '
            f'{weights.shape[0]}x{weights.shape[1]}, '
            f'[{weights.min():.4g}, {weights.max():.4g}]', fontsize=8)
    if maps.gradcam is not None:
        box, label, score = maps.detection
        label_name = (class_names[label] if label < len(class_names)
                      else str(label))
        axes[1, 0].imshow(maps.image)
        axes[1, 0].add_patch(Rectangle(
            (box[0], box[1]), box[2] - box[0], box[3] - box[1],
            fill=False, edgecolor='lime', linewidth=1.5))
        axes[1, 0].set_title(f'top detection: {label_name} {score:.3f}',
                             fontsize=8)
        for column, name in enumerate(names, start=1):
            axes[1, column].imshow(maps.image)
            axes[1, column].imshow(
                _overlay_map(maps.gradcam[name], maps.padded_shape,
                             image_shape), cmap='jet', alpha=0.5)
            axes[1, column].set_title(
                f'Grad-CAM at {name}\nmax {maps.gradcam[name].max():.3g}',
                fontsize=8)
    for axis in axes.flat:
        axis.set_axis_off()
    if maps.notes:
        figure.suptitle('; '.join(maps.notes), fontsize=9)
    with atomic_open(path, 'wb') as f:
        figure.savefig(f, format='png', dpi=100)


def _output_name(image_path: str, used: set) -> str:
    stem = osp.splitext(osp.basename(image_path))[0]
    name, index = f'{stem}_pooling.png', 1
    while name in used:
        name, index = f'{stem}_{index}_pooling.png', index + 1
    used.add(name)
    return name


def visualize_pooling(config: str, checkpoint: str,
                      images: Sequence[str], out_dir: str,
                      gradcam: bool = False,
                      progress: bool = True,
                      device: str = 'cpu') -> Tuple[List[str], str]:
    """Write one PNG per image with a panel per weighted pooling layer.

    Args:
        config (str): mmdet config file.
        checkpoint (str): mmengine checkpoint of that config's detector.
        images (sequence of str): Image files.
        out_dir (str): Created if missing; each image gives
            ``<stem>_pooling.png``.
        gradcam (bool): Add a row of Grad-CAM maps of the top detection's
            score at each layer's output. Default: False.
        progress (bool): Show a progress bar on stderr. Default: True.
        device (str): Device to run the detector on. Default: 'cpu'.

    Returns:
        tuple: (written PNG paths, message about pooling layers without a
        weight map, '' if none).

    Raises:
        FileNotFoundError: a missing config, checkpoint or image.
        ValueError: an image that cannot be decoded; the model has no
            pooling layer with a weight map.
    """
    check_device(device)
    for image in images:
        _check_image(image)
    model, cfg, class_names = load_detector(config, checkpoint, device)
    layers = find_pooling_layers(model)
    if not layers.weighted:
        found = layers.unweighted_message() or (
            'it has no pooling layer from the POOLING registry')
        raise ValueError(
            f'{config} has no pooling layer with a weight map to show: '
            f'{found}')
    os.makedirs(out_dir, exist_ok=True)
    bar = ProgressBar(len(images), file=sys.stderr) if progress else None
    written, used = [], set()
    for image in images:
        maps = compute_image_maps(model, cfg, layers, image, gradcam)
        path = osp.join(out_dir, _output_name(image, used))
        render_image_maps(maps, path, class_names)
        written.append(path)
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return written, layers.unweighted_message()
