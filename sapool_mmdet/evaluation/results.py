"""Driving-class COCO evaluation of a detector's saved detections: a COCO
results JSON, or the pickle that mmdet's ``tools/test.py --out`` writes."""
import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import (Dict, Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch
from mmdet.evaluation import CocoMetric
from mmengine.config import Config
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from terminaltables import AsciiTable

from ..datasets.classes import DRIVING_CLASSES
from ..datasets.coco_io import (CocoFormatError, category_ids_by_name,
                                check_coco_results, load_coco_json,
                                load_coco_results)
from ..datasets.subset import subset_coco
from .report import TABLE4_COLUMNS, ClassAP, DetectionReport

__all__ = [
    'evaluate_results', 'ResultsEvaluation', 'DetectionCounts',
    'load_results', 'load_mmdet_results', 'mmdet_results_to_coco',
    'resolve_label_classes', 'label_classes_from_config'
]

# How many unknown ids an error message shows.
_FIRST_FEW = 5


@dataclass
class DetectionCounts:
    """How many detections a results file holds and how many were kept.

    Args:
        total (int): Detections in the file.
        per_class (dict[str, int]): Kept detections of each evaluated class,
            in class order.
        other_classes (int): Detections of other classes, dropped.
    """
    total: int
    per_class: Dict[str, int]
    other_classes: int

    def table(self) -> str:
        """Return the counts as a text table."""
        rows = [['class', 'detections']]
        rows += [[name, str(n)] for name, n in self.per_class.items()]
        rows += [['other classes (dropped)', str(self.other_classes)],
                 ['total', str(self.total)]]
        return AsciiTable(rows, 'detections').table


@dataclass
class ResultsEvaluation:
    """What :func:`evaluate_results` computed.

    Args:
        report (DetectionReport): The Table 4-style report, as
            :class:`DrivingCocoMetric` makes it.
        detections (DetectionCounts): Detections read, kept and dropped.
        notes (list[str]): Things the reader should know (e.g. that there
            was no detection to evaluate).
        files (tuple[str, ...]): The report files written, if any.
    """
    report: DetectionReport
    detections: DetectionCounts
    notes: List[str] = field(default_factory=list)
    files: Tuple[str, ...] = ()

    def text(self) -> str:
        """The detection counts, the notes and the report, as text."""
        notes = ''.join(f'note: {note}\n' for note in self.notes)
        return f'{self.detections.table()}\n{notes}{self.report.text()}'


# --------------------------------------------------------------- reading

def _storage_from_bytes(data: bytes):
    # torch pickles a tensor's storage as torch.save() bytes and loads them
    # with weights_only=False; weights_only=True reads the same bytes but
    # cannot run code.
    return torch.load(io.BytesIO(data), weights_only=True)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    # pickle protocol 2 stores bytes as _codecs.encode(text, 'latin1')
    if not isinstance(text, str) or encoding != 'latin1':
        raise pickle.UnpicklingError(
            f'it calls _codecs.encode with {encoding!r}; only latin1 '
            'bytes are allowed')
    return text.encode('latin1')


# What the pickle of tools/test.py --out may reference: a list of dicts of
# tensors, numpy arrays and plain values. Anything else is refused, since
# unpickling an arbitrary global can run code.
_PICKLE_GLOBALS = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('_codecs', 'encode'): _latin1_bytes,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
}
# numpy 2 renamed numpy.core to numpy._core (numpy 1.26 has a stub of
# that name); files name either
_NUMPY_CORE = getattr(np, '_core', None)
if _NUMPY_CORE is None or not hasattr(_NUMPY_CORE, 'multiarray'):
    _NUMPY_CORE = np.core
for _module in ('numpy.core', 'numpy._core'):
    _PICKLE_GLOBALS.update({
        (f'{_module}.multiarray', '_reconstruct'):
        _NUMPY_CORE.multiarray._reconstruct,
        (f'{_module}.multiarray', 'scalar'): _NUMPY_CORE.multiarray.scalar,
        (f'{_module}.numeric', '_frombuffer'): _NUMPY_CORE.numeric._frombuffer,
    })


class _ResultsUnpickler(pickle.Unpickler):

    def find_class(self, module: str, name: str):
        found = _PICKLE_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f'it asks for {module}.{name}; a results pickle of mmdet\'s '
                'tools/test.py --out holds only lists, dicts, tensors and '
                'numpy arrays, and other objects are refused because '
                'unpickling them can run code')
        return found


def load_mmdet_results(path: str) -> list:
    """Load the results pickle of mmdet's ``tools/test.py --out``.

    mmdet 3.x dumps a list with one dict per image (``img_id``,
    ``pred_instances`` with ``bboxes`` (x1, y1, x2, y2), ``scores`` and
    ``labels``, and the image's meta information). Only lists, dicts,
    tensors and numpy arrays are unpickled: a file that asks for any other
    object is refused, so a stranger's pickle cannot run code.

    Args:
        path (str): The pickle file.

    Returns:
        list[dict]: One entry per image, as dumped.

    Raises:
        CocoFormatError: if the file cannot be read or unpickled, or asks
            for other objects.
    """
    try:
        with open(path, 'rb') as f:
            return _ResultsUnpickler(f).load()
    except OSError as error:
        raise CocoFormatError(
            f'cannot read {path}: {error.strerror or error}') from error
    except Exception as error:  # unpickling raises anything
        raise CocoFormatError(
            f'{path} is not a readable results pickle: {error}') from error


def _is_pickle(path: str) -> bool:
    if path.endswith(('.pkl', '.pickle')):
        return True
    try:
        with open(path, 'rb') as f:
            # protocol >= 2 pickles open with PROTO (0x80); JSON never does
            return f.read(1) == b'\x80'
    except OSError:
        return False


def load_results(path: str) -> Tuple[str, list]:
    """Load a COCO results JSON or an mmdet results pickle.

    A file ending in ``.pkl``/``.pickle`` or starting like a pickle is read
    with :func:`load_mmdet_results`, anything else as a COCO results JSON.

    Args:
        path (str): The results file.

    Returns:
        tuple[str, list]: ``'coco'`` or ``'mmdet'``, and the entries.

    Raises:
        CocoFormatError: if the file cannot be read or has the wrong
            structure.
    """
    if _is_pickle(path):
        return 'mmdet', load_mmdet_results(path)
    return 'coco', load_coco_results(path)


# -------------------------------------------------------- mmdet results

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


def _check_mmdet_entry(entry, index: int, source: str):
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
    same numbers as one inside the test run.

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
        if not len(bboxes) == len(scores) == len(labels):
            raise CocoFormatError(
                f'{source}: entry {index} (image {entry["img_id"]!r}) has '
                f'{len(bboxes)} boxes, {len(scores)} scores and '
                f'{len(labels)} labels')
        bad = ~np.isfinite(bboxes).all(axis=1) | \
            (bboxes[:, 2] < bboxes[:, 0]) | (bboxes[:, 3] < bboxes[:, 1])
        if bad.any():
            raise CocoFormatError(
                f'{source}: entry {index} (image {entry["img_id"]!r}) has '
                f'a malformed box {bboxes[bad][0].tolist()}: boxes are '
                '(x1, y1, x2, y2), finite, with x2 >= x1 and y2 >= y1')
        if not np.isfinite(scores).all():
            raise CocoFormatError(
                f'{source}: entry {index} (image {entry["img_id"]!r}) has '
                'a score that is not a finite number')
        out_of_range = (labels < 0) | (labels >= len(label_classes))
        if out_of_range.any():
            raise CocoFormatError(
                f'{source}: entry {index} (image {entry["img_id"]!r}) has '
                f'the label {int(labels[out_of_range][0])}, but the label '
                f'classes are only {len(label_classes)} '
                f'({", ".join(map(repr, label_classes))}); were the '
                'results made with other classes?')
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


# ---------------------------------------------------------- label classes

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


# ------------------------------------------------------------- checking

def _first_few(values: Iterable) -> str:
    values = list(values)
    shown = ', '.join(map(repr, values[:_FIRST_FEW]))
    return shown + (', ...' if len(values) > _FIRST_FEW else '')


def _check_image_ids(image_ids: Sequence, gt_image_ids: set, source: str,
                     gt_source: str, what: str) -> None:
    """``image_ids`` has one entry per detection (or per pickle entry)."""
    unknown = [image_id for image_id in image_ids
               if image_id not in gt_image_ids]
    if unknown:
        distinct = list(dict.fromkeys(unknown))
        raise CocoFormatError(
            f'{source}: {len(unknown)} {what}(s) on {len(distinct)} image '
            f'id(s) that {gt_source} does not have (first: '
            f'{_first_few(distinct)}); evaluate the results against the '
            'annotation file of the images they were computed on')


def _check_category_ids(detections: Sequence[dict], gt_categories: list,
                        source: str, gt_source: str) -> None:
    known = {category['id'] for category in gt_categories}
    unknown = [det['category_id'] for det in detections
               if det['category_id'] not in known]
    if unknown:
        distinct = list(dict.fromkeys(unknown))
        raise CocoFormatError(
            f'{source}: {len(unknown)} detections have category ids that '
            f'{gt_source} does not have: {_first_few(distinct)}; its '
            f'category ids are {", ".join(map(str, sorted(known)))}. Were '
            'the results made against another annotation file, or do they '
            'hold label indices instead of category ids?')


def _check_ground_truth(annotations: Sequence[dict], gt_source: str) -> None:
    """COCOeval reads bbox, area and iscrowd of every evaluated annotation."""
    for ann in annotations:
        bbox = ann.get('bbox')
        if any(key not in ann for key in ('bbox', 'area', 'iscrowd')) or \
                not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise CocoFormatError(
                f'{gt_source}: annotation {ann["id"]} needs "bbox" '
                '([x, y, width, height]), "area" and "iscrowd" for bbox '
                f'evaluation, got {str(ann)[:200]}')


# ------------------------------------------------------------ evaluating

def _empty_results(coco_gt: COCO) -> COCO:
    # loadRes cannot load an empty list; COCOeval is happy with an empty
    # COCO over the same images and categories.
    coco_dt = COCO()
    coco_dt.dataset = dict(
        images=list(coco_gt.dataset['images']),
        categories=list(coco_gt.dataset['categories']),
        annotations=[])
    coco_dt.createIndex()
    return coco_dt


def _coco_eval(gt: dict, detections: List[dict], classes: Sequence[str],
               cat_ids: Sequence[int]) -> DetectionReport:
    """COCOeval with CocoMetric's parameters, its rounding, and the report
    that DrivingCocoMetric builds from it."""
    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    img_ids = coco_gt.getImgIds()
    coco_dt = coco_gt.loadRes(detections) if detections else \
        _empty_results(coco_gt)
    reference = CocoMetric()
    coco_eval = COCOeval(coco_gt, coco_dt, 'bbox')
    coco_eval.params.catIds = list(cat_ids)
    coco_eval.params.imgIds = img_ids
    coco_eval.params.maxDets = list(reference.proposal_nums)
    coco_eval.params.iouThrs = reference.iou_thrs
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()

    stat_index = dict(
        bbox_mAP=0, bbox_mAP_50=1, bbox_mAP_75=2, bbox_mAP_s=3,
        bbox_mAP_m=4, bbox_mAP_l=5)
    summary = {
        key: float(f'{round(coco_eval.stats[stat_index[key]], 3)}')
        for key, _ in TABLE4_COLUMNS
    }
    precisions = coco_eval.eval['precision']
    per_class = []
    for k, (name, cat_id) in enumerate(zip(classes, cat_ids)):
        # all IoUs and recalls, all areas, the largest maxDets
        precision = precisions[:, :, k, 0, -1]
        precision = precision[precision > -1]
        ap = float(round(np.mean(precision), 3)) if precision.size else \
            float('nan')
        gt_ids = coco_gt.getAnnIds(
            imgIds=img_ids, catIds=[cat_id], iscrowd=False)
        per_class.append(
            ClassAP(
                name=name,
                category_id=cat_id,
                bbox_mAP=ap,
                gt_instances=len(gt_ids)))
    return DetectionReport(
        summary=summary, per_class=per_class, num_images=len(img_ids))


def evaluate_results(
        gt: Union[str, dict],
        results: Union[str, list],
        classes: Sequence[str] = DRIVING_CLASSES,
        label_classes: Optional[Sequence[str]] = None,
        out_dir: Optional[str] = None,
        report_name: str = 'driving_metrics') -> ResultsEvaluation:
    """Evaluate saved detections on the classes ``classes`` with the report
    of :class:`DrivingCocoMetric`.

    Ground truth and detections are restricted to ``classes``, matched by
    name; bbox AP comes from pycocotools' ``COCOeval`` with ``CocoMetric``'s
    parameters (IoU 0.5:0.95, at most 1000 detections per image) over
    every image of the ground truth (images without an object of
    ``classes`` count for false positives), so the numbers equal those of
    ``DrivingCocoMetric`` for the same predictions. Detections of other
    classes are dropped and counted. Everything is checked before anything
    is written; the report files are written atomically.

    Args:
        gt (str | dict): COCO annotation file (or its parsed dict) of the
            images the detections were computed on.
        results (str | list): A COCO results JSON (a list of
            ``{image_id, category_id, bbox, score}``), the pickle of mmdet's
            ``tools/test.py --out``, or the loaded list of either.
        classes (Sequence[str]): The classes to evaluate, in report order.
            Defaults to :data:`DRIVING_CLASSES`.
        label_classes (Sequence[str], optional): For mmdet results only:
            the class of each label, i.e. the model's
            ``dataset_meta['classes']`` (see :func:`resolve_label_classes`).
            The pickle does not store them, so they are required there.
            Defaults to None.
        out_dir (str, optional): Where to write ``<report_name>.json`` and
            ``.md``; nothing is written without it. Defaults to None.
        report_name (str): File name of the report, without suffix.
            Defaults to 'driving_metrics'.

    Returns:
        ResultsEvaluation: The report, the detection counts, notes and the
        files written.

    Raises:
        ValueError: (often as :class:`CocoFormatError`) for unreadable or
            malformed files, a class the ground truth does not have (the
            message lists its classes), detections on images or with
            category ids the ground truth does not have, a malformed box,
            or mmdet results without ``label_classes``.
    """
    gt_source = gt if isinstance(gt, str) else 'the ground truth'
    gt_dict = load_coco_json(gt) if isinstance(gt, str) else gt
    cat_ids = category_ids_by_name(gt_dict['categories'], classes, gt_source)

    if isinstance(results, str):
        source = results
        kind, entries = load_results(results)
    else:
        source = 'the results'
        kind = 'mmdet' if results and isinstance(results[0], dict) and \
            'pred_instances' in results[0] else 'coco'
        entries = results
    gt_image_ids = {image['id'] for image in gt_dict['images']}
    kept_ids = dict(zip(classes, cat_ids))
    if kind == 'mmdet':
        if label_classes is None:
            raise ValueError(
                f'{source} is an mmdet results pickle: its labels index the '
                "model's dataset_meta['classes'], which the pickle does not "
                'store; give the label classes (the names in label order, '
                "'coco' for a stock mmdet COCO model, 'driving' for this "
                "package's CocoDrivingDataset, or the test config)")
        detections, other_classes = mmdet_results_to_coco(
            entries, label_classes, kept_ids, source)
        _check_image_ids([entry['img_id'] for entry in entries],
                         gt_image_ids, source, gt_source, 'image result')
        total = other_classes + len(detections)
    else:
        if label_classes is not None:
            raise ValueError(
                f'{source} is a COCO results file, whose detections name '
                'their category ids; label classes are for mmdet results '
                'pickles only')
        check_coco_results(entries, source)
        _check_category_ids(entries, gt_dict['categories'], source,
                            gt_source)
        _check_image_ids([det['image_id'] for det in entries], gt_image_ids,
                         source, gt_source, 'detection')
        kept_set = set(cat_ids)
        # fresh dicts: loadRes adds keys to the detections it loads
        detections = [dict(det) for det in entries
                      if det['category_id'] in kept_set]
        total = len(entries)
        other_classes = total - len(detections)

    per_class = dict.fromkeys(classes, 0)
    name_of = {cat_id: name for name, cat_id in kept_ids.items()}
    for det in detections:
        per_class[name_of[det['category_id']]] += 1
    counts = DetectionCounts(total, per_class, other_classes)
    notes = []
    if not detections:
        what = 'no detections' if total == 0 else \
            f'no detections of the evaluated classes ({total} of other ' \
            'classes dropped)'
        notes.append(f'{source} has {what}: every AP is 0 (n/a where '
                     'there is no ground truth)')

    gt_subset, _ = subset_coco(
        gt_dict, classes, keep_empty=True, source=gt_source)
    _check_ground_truth(gt_subset['annotations'], gt_source)
    # COCOeval writes into the annotations it evaluates: give it copies
    gt_subset['annotations'] = [dict(ann) for ann in gt_subset['annotations']]
    report = _coco_eval(gt_subset, detections, classes, cat_ids)
    files = report.write(out_dir, report_name) if out_dir is not None \
        else ()
    return ResultsEvaluation(report, counts, notes, tuple(files))
