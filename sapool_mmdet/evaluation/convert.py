"""mmdet detection results (``pred_instances`` of label indices) as COCO
detections (category ids), and the classes those labels index."""
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
from mmdet.evaluation import CocoMetric
from mmengine.config import Config

from ..datasets.classes import DRIVING_CLASSES
from ..datasets.coco_checks import CocoFormatError, check_predictions

__all__ = [
    'mmdet_results_to_coco', 'label_classes_from_config',
    'resolve_label_classes'
]


def _array(value, dtype, shape_tail: tuple, what: str, source: str,
           index: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise CocoFormatError(
            f'{source}: entry {index}: pred_instances.{what} is not an '
            f'array of numbers: {error}') from error
    if array.ndim != 1 + len(shape_tail) or array.shape[1:] != shape_tail:
        expected = '(N, 4)' if shape_tail else '(N, )'
        raise CocoFormatError(
            f'{source}: entry {index}: pred_instances.{what} has the shape '
            f'{tuple(array.shape)}, expected {expected}')
    return array


def _check_mmdet_entry(entry, index: int, source: str) -> dict:
    pred = entry.get('pred_instances') if isinstance(entry, dict) else None
    if 'img_id' not in (entry if isinstance(entry, dict) else {}) or \
            not isinstance(pred, dict) or \
            any(key not in pred for key in ('bboxes', 'scores', 'labels')):
        got = sorted(entry) if isinstance(entry, dict) else \
            type(entry).__name__
        raise CocoFormatError(
            f'{source}: entry {index} is not an mmdet detection result: '
            "expected a dict with 'img_id' and 'pred_instances' holding "
            "'bboxes', 'scores' and 'labels' (what tools/test.py --out "
            f'writes), got {got}')
    return pred


def mmdet_results_to_coco(
        results: Sequence[dict], label_classes: Sequence[str],
        category_ids: Mapping[str, int],
        source: str = 'the results') -> Tuple[List[dict], int]:
    """Turn mmdet results into COCO detections, as ``CocoMetric`` does.

    Label ``i`` is the class ``label_classes[i]``; its detections get the
    category id ``category_ids[label_classes[i]]``. Boxes are converted to
    float32 and from (x1, y1, x2, y2) to [x, y, width, height] exactly as
    ``CocoMetric.results2json`` converts them, so the evaluation sees the
    same numbers as one inside the test run. Each image's predictions go
    through :func:`~sapool_mmdet.datasets.coco_checks.check_predictions`,
    the check the in-run metric applies.

    Args:
        results (Sequence[dict]): Entries as :func:`load_mmdet_results`
            returns them.
        label_classes (Sequence[str]): The class of each label: the
            model's ``dataset_meta['classes']``.
        category_ids (Mapping[str, int]): Category id of each class to
            keep; detections of other classes are dropped.
        source (str): What to call the results in error messages.
            Defaults to 'the results'.

    Returns:
        tuple[list[dict], int]: The kept detections and how many were
        dropped.

    Raises:
        CocoFormatError: if an entry is not a detection result, an array
            has the wrong shape, a box is not finite with x2 >= x1 and
            y2 >= y1, a score is not finite, or a label is not an index
            of ``label_classes``.
    """
    if not isinstance(results, list):
        raise CocoFormatError(
            f'{source}: an mmdet results pickle holds a list with one dict '
            f'per image, got {type(results).__name__}')
    reference = CocoMetric()
    category_of_label = [category_ids.get(name) for name in label_classes]
    detections, dropped = [], 0
    for index, entry in enumerate(results):
        pred = _check_mmdet_entry(entry, index, source)
        bboxes = _array(pred['bboxes'], np.float32, (4, ), 'bboxes', source,
                        index)
        scores = _array(pred['scores'], np.float32, (), 'scores', source,
                        index)
        labels = _array(pred['labels'], np.int64, (), 'labels', source,
                        index)
        check_predictions(bboxes, scores, labels, label_classes,
                          entry['img_id'], source)
        for bbox, score, label in zip(bboxes, scores, labels):
            category_id = category_of_label[label]
            if category_id is None:
                dropped += 1
                continue
            detections.append(
                dict(
                    image_id=entry['img_id'],
                    bbox=reference.xyxy2xywh(bbox),
                    score=float(score),
                    category_id=category_id))
    return detections, dropped


def label_classes_from_config(config: str) -> Tuple[str, ...]:
    """The classes a model's labels index, read from its test config.

    ``tools/test.py`` sets the model's ``dataset_meta`` from the test
    dataset: ``test_dataloader.dataset.metainfo.classes`` if the config
    sets it, else the ``METAINFO`` of the dataset type (dataset wrappers
    are looked through).

    Args:
        config (str): The config file of the test run.

    Returns:
        tuple[str, ...]: The class names, in label order.

    Raises:
        ValueError: if the config names no test dataset whose classes can
            be found.
    """
    from mmdet.registry import DATASETS

    cfg = Config.fromfile(config)
    dataset = cfg.get('test_dataloader', {}).get('dataset')
    while isinstance(dataset, dict) and 'metainfo' not in dataset and \
            isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    if not isinstance(dataset, dict):
        raise ValueError(
            f'{config} has no test_dataloader.dataset to take the class '
            'names from; give the label classes by name instead')
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None:
        dataset_type = dataset.get('type')
        if isinstance(dataset_type, str):
            dataset_type = DATASETS.get(dataset_type)
        classes = getattr(dataset_type, 'METAINFO', {}).get('classes')
    if not classes:
        raise ValueError(
            f'cannot find the class names of {config}: its test dataset '
            f'({dataset.get("type")!r}) sets no metainfo.classes and its '
            'type has no METAINFO classes; give the label classes by name '
            'instead')
    return tuple(classes)


def resolve_label_classes(
        names: Optional[Sequence[str]] = None,
        config: Optional[str] = None) -> Optional[Tuple[str, ...]]:
    """The label classes of an mmdet results pickle, from names or config.

    Args:
        names (Sequence[str], optional): Class names in label order, or one
            of the keywords ``coco`` (mmdet's ``CocoDataset`` classes, the
            80 COCO categories in id order: a stock mmdet COCO model) and
            ``driving`` (:data:`DRIVING_CLASSES`: this package's
            ``CocoDrivingDataset``). Defaults to None.
        config (str, optional): The test config, read with
            :func:`label_classes_from_config`. Defaults to None.

    Returns:
        tuple[str, ...] | None: The classes; None if neither is given.

    Raises:
        ValueError: if both are given.
    """
    if names is not None and config is not None:
        raise ValueError('give the label classes by name or by config, '
                         'not both')
    if config is not None:
        return label_classes_from_config(config)
    if names is None:
        return None
    if list(names) == ['coco']:
        from mmdet.datasets import CocoDataset
        return tuple(CocoDataset.METAINFO['classes'])
    if list(names) == ['driving']:
        return DRIVING_CLASSES
    return tuple(names)
