"""The one reader of COCO annotation and results files.

Every path that reads COCO input goes through these checks, so the
dataset (training and test), the in-run metric and the offline tools
(``tools/eval_driving.py``, ``tools/coco_subset.py``) accept and refuse the
same files with the same messages, when the file is opened rather than
when a later step trips over it:

- an annotation file must be JSON with ``images``, ``annotations`` and
  ``categories``; image, annotation and category ids must be unique (two
  categories on one id, or one name on two ids, are refused); every
  annotation must refer to an image and a category of the file and have a
  box ``[x, y, width, height]`` of four finite numbers with width and
  height >= 0;
- an annotation without ``iscrowd`` or ``area`` (which many converters do
  not write) gets ``iscrowd=0`` and the area of its box, and one
  :class:`CocoFilledWarning` names the file and how many were filled;
- detections (a COCO results list, or the arrays of an mmdet prediction)
  must have finite boxes and scores, named by image, labels inside the
  label classes, and image / category ids the ground truth has.
"""
import json
import math
import os.path as osp
import warnings
from collections import Counter
from itertools import chain
from numbers import Real
from typing import Any, Iterable, List, Mapping, Sequence

import numpy as np

__all__ = [
    'CocoFormatError', 'CocoFilledWarning', 'read_json', 'load_coco_json',
    'check_coco_annotations', 'category_ids_by_name', 'check_coco_results',
    'load_coco_results', 'check_result_image_ids',
    'check_result_category_ids', 'check_predictions', 'label_count_error',
    'check_image_files'
]

# How many ids an error message shows.
_FIRST_FEW = 5


class CocoFormatError(ValueError):
    """A file is not a readable COCO detection file (annotations or
    results); the message names the file and the first problem."""


class CocoFilledWarning(UserWarning):
    """Annotations lacked ``iscrowd`` or ``area`` and were filled."""


def _first_few(values: Iterable) -> str:
    values = list(values)
    shown = ', '.join(map(repr, values[:_FIRST_FEW]))
    return shown + (', ...' if len(values) > _FIRST_FEW else '')


def read_json(path: str) -> Any:
    """Parse a JSON file.

    Args:
        path (str): The file.

    Returns:
        Any: The parsed content.

    Raises:
        CocoFormatError: if the file cannot be read or is not (complete)
            JSON; the message names the file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except OSError as error:
        raise CocoFormatError(
            f'cannot read {path}: {error.strerror or error}') from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CocoFormatError(
            f'{path} is not valid JSON (truncated or not a JSON file?): '
            f'{error}') from error


def _check_entries(source: str, section: str, entries,
                   keys: Sequence[str]) -> None:
    if not isinstance(entries, list):
        raise CocoFormatError(
            f'{source}: "{section}" must be a list, got '
            f'{type(entries).__name__}')
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(k not in entry for k in keys):
            raise CocoFormatError(
                f'{source}: {section}[{index}] must be an object with the '
                f'keys {list(keys)}, got {str(entry)[:200]}')


def _refuse_repeated_ids(source: str, section: str, entries: list) -> None:
    counts = Counter(entry['id'] for entry in entries)
    if len(counts) == len(entries):
        return
    repeated = [entry_id for entry_id, n in counts.items() if n > 1]
    raise CocoFormatError(
        f'{source}: {len(repeated)} {section} id(s) are used more than '
        f'once: {_first_few(repeated)}; ids must be unique (pycocotools '
        'would keep one of each and evaluate against the wrong ground '
        'truth)')


def _check_categories(source: str, categories: list) -> None:
    _refuse_repeated_ids(source, 'category', categories)
    names = Counter(category['name'] for category in categories)
    repeated = [name for name, n in names.items() if n > 1]
    if repeated:
        ids = [c['id'] for c in categories if c['name'] in repeated]
        raise CocoFormatError(
            f'{source}: the category name(s) {_first_few(repeated)} are '
            f'used by more than one category id ({_first_few(ids)}); each '
            'name must name one category')


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def _is_box(bbox) -> bool:
    return isinstance(bbox, (list, tuple)) and len(bbox) == 4 and \
        all(map(_is_number, bbox)) and bbox[2] >= 0 and bbox[3] >= 0


def check_coco_annotations(coco: Any, source: str = 'the annotation file'
                           ) -> dict:
    """Check a parsed COCO annotation file, filling what converters omit.

    Annotations without ``iscrowd`` get ``iscrowd=0``; without ``area``,
    the area of their box (width x height). One
    :class:`CocoFilledWarning` names the file and how many were filled.

    Args:
        coco (Any): The parsed file.
        source (str): What to call the file in messages.
            Defaults to 'the annotation file'.

    Returns:
        dict: ``coco``, filled in place.

    Raises:
        CocoFormatError: at the first problem: not an object with
            ``images``, ``annotations`` and ``categories`` lists; an entry
            without its keys (images: ``id``, ``file_name``, ``width``,
            ``height``; annotations: ``id``, ``image_id``, ``category_id``,
            ``bbox``; categories: ``id``, ``name``); a repeated id; a
            category name on two ids; an annotation whose image or
            category is not in the file; a box that is not four finite
            numbers with width and height >= 0.
    """
    if isinstance(coco, list):
        raise CocoFormatError(
            f'{source}: a COCO annotation file holds a JSON object, got a '
            'list (a list of detections is a COCO results file, not an '
            'annotation file)')
    if not isinstance(coco, dict):
        raise CocoFormatError(
            f'{source}: a COCO annotation file holds a JSON object, got '
            f'{type(coco).__name__}')
    missing = [key for key in ('images', 'annotations', 'categories')
               if key not in coco]
    if missing:
        raise CocoFormatError(
            f'{source}: not a COCO detection file, it has no {missing} '
            f'(top-level keys: {sorted(coco)})')
    _check_entries(source, 'categories', coco['categories'], ('id', 'name'))
    _check_entries(source, 'images', coco['images'],
                   ('id', 'file_name', 'width', 'height'))
    _check_entries(source, 'annotations', coco['annotations'],
                   ('id', 'image_id', 'category_id', 'bbox'))
    _check_categories(source, coco['categories'])
    _refuse_repeated_ids(source, 'image', coco['images'])
    _refuse_repeated_ids(source, 'annotation', coco['annotations'])

    image_ids = {image['id'] for image in coco['images']}
    category_ids = {category['id'] for category in coco['categories']}
    no_iscrowd, no_area = [], []
    for ann in coco['annotations']:
        if ann['image_id'] not in image_ids:
            raise CocoFormatError(
                f'{source}: annotation {ann["id"]} refers to image '
                f'{ann["image_id"]!r}, which is not in "images"')
        if ann['category_id'] not in category_ids:
            raise CocoFormatError(
                f'{source}: annotation {ann["id"]} has the category id '
                f'{ann["category_id"]!r}, which is not in "categories" '
                f'(ids: {", ".join(map(str, sorted(category_ids)))})')
        bbox = ann['bbox']
        if not _is_box(bbox):
            raise CocoFormatError(
                f'{source}: annotation {ann["id"]} has a malformed bbox '
                f'{str(bbox)[:200]}: a COCO bbox is [x, y, width, height], '
                'four finite numbers with width and height >= 0')
        if 'iscrowd' not in ann:
            ann['iscrowd'] = 0
            no_iscrowd.append(ann['id'])
        if 'area' not in ann:
            ann['area'] = float(bbox[2] * bbox[3])
            no_area.append(ann['id'])
    total = len(coco['annotations'])
    filled = [f'{len(ids)} of {total} annotations have no "{key}" (ids '
              f'{_first_few(ids)}): {how}'
              for ids, key, how in ((no_iscrowd, 'iscrowd', 'iscrowd=0 used'),
                                    (no_area, 'area',
                                     'the area of their box used'))
              if ids]
    if filled:
        warnings.warn(f'{source}: {"; ".join(filled)}', CocoFilledWarning,
                      stacklevel=2)
    return coco


def load_coco_json(path: str) -> dict:
    """Load a COCO detection annotation file and check it with
    :func:`check_coco_annotations`.

    Args:
        path (str): Path of a COCO-format JSON file.

    Returns:
        dict: The parsed file, with missing ``iscrowd``/``area`` filled.

    Raises:
        CocoFormatError: if the file cannot be read, is not JSON or fails
            :func:`check_coco_annotations`; the message names the file.
    """
    return check_coco_annotations(read_json(path), source=path)


def category_ids_by_name(categories: Sequence[Mapping],
                         names: Sequence[str],
                         source: str = 'the annotation file') -> List[int]:
    """Look up category ids by name, in the order of ``names``.

    Unlike pycocotools' ``getCatIds(catNms=...)``, which returns ids in the
    order of the file and silently skips unknown names, the result follows
    ``names`` (so label ``i`` is ``names[i]``) and every name must exist.

    Args:
        categories (Sequence[Mapping]): The ``categories`` section of a COCO
            file: entries with ``id`` and ``name``.
        names (Sequence[str]): Class names to look up.
        source (str): What to call the file in error messages.
            Defaults to 'the annotation file'.

    Returns:
        list[int]: ``ids[i]`` is the id of the category named ``names[i]``.

    Raises:
        ValueError: if a name is repeated or is not a category of the file;
            the message lists the categories the file has.
    """
    repeated = sorted(name for name, n in Counter(names).items() if n > 1)
    if repeated:
        raise ValueError(f'class names must be unique, {repeated} repeated')
    ids_by_name = {category['name']: category['id']
                   for category in categories}
    unknown = [name for name in names if name not in ids_by_name]
    if unknown:
        raise ValueError(
            f'{source} has no categor{"y" if len(unknown) == 1 else "ies"} '
            f'named {", ".join(map(repr, unknown))}; its categories are: '
            f'{", ".join(map(repr, ids_by_name)) or "none"}')
    return [ids_by_name[name] for name in names]


_RESULT_KEYS = ('image_id', 'category_id', 'bbox', 'score')


def _check_one_result(det, index: int, source: str) -> None:
    if not isinstance(det, dict) or any(k not in det for k in _RESULT_KEYS):
        raise CocoFormatError(
            f'{source}: detection {index} must be an object with the '
            f'keys {list(_RESULT_KEYS)}, got {str(det)[:200]}')
    if not _is_box(det['bbox']):
        raise CocoFormatError(
            f'{source}: detection {index} (image {det["image_id"]!r}) '
            f'has a malformed bbox {str(det["bbox"])[:200]}: a COCO bbox is '
            '[x, y, width, height], four finite numbers with width '
            'and height >= 0')
    if not _is_number(det['score']):
        raise CocoFormatError(
            f'{source}: detection {index} (image {det["image_id"]!r}) '
            f'has the score {det["score"]!r}; a score is a finite '
            'number')


def _results_look_right(detections: list) -> bool:
    """One vectorised pass that accepts a well-formed list (the usual case,
    hundreds of thousands of detections); anything else is looked at one
    detection at a time to name the first bad one."""
    try:
        bboxes = [det['bbox'] for det in detections]
        scores = [det['score'] for det in detections]
        for det in detections:
            det['image_id'], det['category_id']
    except (KeyError, TypeError, IndexError):
        return False
    if not set(map(type, scores)) <= {int, float}:
        return False
    if not all(type(bbox) is list and len(bbox) == 4 for bbox in bboxes):
        return False
    if not set(map(type, chain.from_iterable(bboxes))) <= {int, float}:
        return False
    boxes = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    return bool(np.isfinite(boxes).all() and (boxes[:, 2:] >= 0).all()
                and np.isfinite(np.array(scores, dtype=np.float64)).all())


def check_coco_results(detections: Any, source: str = 'the results') -> list:
    """Check that ``detections`` is a COCO results list.

    A COCO results file is a JSON list of detections
    ``{"image_id", "category_id", "bbox": [x, y, width, height], "score"}``
    (what pycocotools' ``COCO.loadRes`` reads and mmdet's ``CocoMetric``
    writes with ``outfile_prefix``). Ids are checked against the ground
    truth by :func:`check_result_image_ids` and
    :func:`check_result_category_ids`.

    Args:
        detections (Any): The parsed file.
        source (str): What to call the file in error messages.
            Defaults to 'the results'.

    Returns:
        list[dict]: ``detections``, unchanged.

    Raises:
        CocoFormatError: at the first entry that is not a detection, or
            whose bbox is not four finite numbers with width and height
            >= 0, or whose score is not a finite number (named by index
            and image).
    """
    if isinstance(detections, dict):
        hint = (' (this is an annotation file, not a results file)'
                if 'annotations' in detections else '')
        raise CocoFormatError(
            f'{source}: a COCO results file holds a JSON list of '
            f'detections, got an object{hint}')
    if not isinstance(detections, list):
        raise CocoFormatError(
            f'{source}: a COCO results file holds a JSON list of '
            f'detections, got {type(detections).__name__}')
    if not _results_look_right(detections):
        for index, det in enumerate(detections):
            _check_one_result(det, index, source)
    return detections


def load_coco_results(path: str) -> list:
    """Load a COCO results file and check it with
    :func:`check_coco_results`.

    Args:
        path (str): Path of a COCO results JSON file (a list of
            ``{image_id, category_id, bbox, score}``).

    Returns:
        list[dict]: The detections.

    Raises:
        CocoFormatError: if the file cannot be read, is not JSON or is not
            a results list.
    """
    return check_coco_results(read_json(path), source=path)


def check_result_image_ids(image_ids: Sequence, gt_image_ids: Iterable,
                           source: str, gt_source: str,
                           what: str = 'detection') -> None:
    """Refuse results on images the ground truth does not have.

    Args:
        image_ids (Sequence): One image id per detection (or per image
            result).
        gt_image_ids (Iterable): The image ids of the ground truth.
        source (str): What to call the results in the message.
        gt_source (str): What to call the ground truth in the message.
        what (str): What one entry of ``image_ids`` is.
            Defaults to 'detection'.

    Raises:
        CocoFormatError: naming how many and the first few unknown ids.
    """
    gt_image_ids = set(gt_image_ids)
    unknown = [image_id for image_id in image_ids
               if image_id not in gt_image_ids]
    if unknown:
        distinct = list(dict.fromkeys(unknown))
        raise CocoFormatError(
            f'{source}: {len(unknown)} {what}(s) on {len(distinct)} image '
            f'id(s) that {gt_source} does not have (first: '
            f'{_first_few(distinct)}); evaluate the results against the '
            'annotation file of the images they were computed on')


def check_result_category_ids(category_ids: Sequence,
                              gt_categories: Sequence[Mapping], source: str,
                              gt_source: str) -> None:
    """Refuse detections whose category ids the ground truth does not have.

    Args:
        category_ids (Sequence): One category id per detection.
        gt_categories (Sequence[Mapping]): The ground truth's categories.
        source (str): What to call the results in the message.
        gt_source (str): What to call the ground truth in the message.

    Raises:
        CocoFormatError: naming the unknown ids and the known ones.
    """
    known = {category['id'] for category in gt_categories}
    unknown = [cat_id for cat_id in category_ids if cat_id not in known]
    if unknown:
        distinct = list(dict.fromkeys(unknown))
        raise CocoFormatError(
            f'{source}: {len(unknown)} detections have category ids that '
            f'{gt_source} does not have: {_first_few(distinct)}; its '
            f'category ids are {", ".join(map(str, sorted(known)))}. Were '
            'the results made against another annotation file, or do they '
            'hold label indices instead of category ids?')


def label_count_error(what: str, num_labels: int,
                      classes: Sequence[str]) -> str:
    """The message for labels that do not fit the label classes, shared by
    every path that meets them (a head built for other classes, a
    prediction with an out-of-range label).

    Args:
        what (str): What has ``num_labels`` labels, e.g. "the model's
            bbox_head has 80 classes" or "image 7 has the label 20".
        num_labels (int): How many labels it needs.
        classes (Sequence[str]): The label classes.

    Returns:
        str: The message.
    """
    return (f'{what}, but the label classes are only {len(classes)} '
            f'({", ".join(map(repr, classes))}); were the results made '
            'with other classes? A model must be built with as many '
            f'classes as its dataset (num_classes={len(classes)} in the '
            "head, or the model's classes in the dataset's metainfo)"
            if num_labels > len(classes) else
            f'{what}, but the label classes are {len(classes)} '
            f'({", ".join(map(repr, classes))}); a model must be built '
            'with as many classes as its dataset')


def check_predictions(bboxes: np.ndarray, scores: np.ndarray,
                      labels: np.ndarray, classes: Sequence[str],
                      image: Any, source: str) -> None:
    """Check the predictions of one image (mmdet's ``pred_instances``).

    Args:
        bboxes (np.ndarray): (N, 4) boxes (x1, y1, x2, y2), in pixels.
        scores (np.ndarray): (N, ) scores.
        labels (np.ndarray): (N, ) labels, indices of ``classes``.
        classes (Sequence[str]): The label classes.
        image (Any): The image id, for the message.
        source (str): Where the predictions come from, for the message.

    Raises:
        CocoFormatError: if the lengths differ, a box is not finite with
            x2 >= x1 and y2 >= y1, a score is not finite (a diverged
            model), or a label is not an index of ``classes``.
    """
    if not len(bboxes) == len(scores) == len(labels):
        raise CocoFormatError(
            f'{source}: image {image!r} has {len(bboxes)} boxes, '
            f'{len(scores)} scores and {len(labels)} labels')
    bad = ~np.isfinite(bboxes).all(axis=1) | \
        (bboxes[:, 2] < bboxes[:, 0]) | (bboxes[:, 3] < bboxes[:, 1])
    if bad.any():
        raise CocoFormatError(
            f'{source}: image {image!r} has {int(bad.sum())} malformed '
            f'box(es), first {bboxes[bad][0].tolist()}: boxes are (x1, y1, '
            'x2, y2), finite, with x2 >= x1 and y2 >= y1 (a model whose '
            'loss diverged predicts NaN)')
    not_finite = ~np.isfinite(scores)
    if not_finite.any():
        raise CocoFormatError(
            f'{source}: image {image!r} has {int(not_finite.sum())} '
            'score(s) that are not finite numbers (a model whose loss '
            'diverged predicts NaN)')
    out_of_range = (labels < 0) | (labels >= len(classes))
    if out_of_range.any():
        label = int(labels[out_of_range][0])
        raise CocoFormatError(
            f'{source}: ' + label_count_error(
                f'image {image!r} has the label {label}', label + 1,
                classes))


def check_image_files(paths: Sequence[str], source: str) -> None:
    """Refuse a dataset whose image files are not there, before the first
    one is needed (a training run would stop at the first missing image,
    possibly after hours).

    Args:
        paths (Sequence[str]): The image paths the dataset will read.
        source (str): The annotation file, for the message.

    Raises:
        FileNotFoundError: naming how many are missing, the first few and
            the folder they were looked for in.
    """
    missing = [path for path in paths if not osp.isfile(path)]
    if missing:
        folder = osp.dirname(missing[0]) or '.'
        where = f'the folder {folder}' + (
            '' if osp.isdir(folder) else ', which does not exist')
        raise FileNotFoundError(
            f'{len(missing)} of the {len(paths)} images of {source} are '
            f'not files (looked for in {where}; first: '
            f'{_first_few(osp.basename(path) for path in missing)}); check '
            "data_root and data_prefix=dict(img=...) of the dataset")
