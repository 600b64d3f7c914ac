"""Driving-class COCO evaluation of a detector's saved detections: a COCO
results JSON, or the pickle that mmdet's ``tools/test.py --out`` writes.

Reading the files is :mod:`.results_io`, turning mmdet results into COCO
detections :mod:`.convert`, and every input check
:mod:`sapool_mmdet.datasets.coco_checks`; this module evaluates."""
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmdet.evaluation import CocoMetric
from pycocotools.cocoeval import COCOeval
from terminaltables import AsciiTable

from ..datasets.classes import DRIVING_CLASSES
from ..datasets.coco_checks import (category_ids_by_name,
                                    check_coco_annotations, check_coco_results,
                                    check_result_category_ids,
                                    check_result_image_ids, load_coco_json)
from ..datasets.coco_driving import NamedCategoryCOCO
from ..datasets.subset import subset_coco
from .convert import mmdet_results_to_coco
from .report import TABLE4_COLUMNS, ClassAP, DetectionReport
from .results_io import load_results

__all__ = ['evaluate_results', 'ResultsEvaluation', 'DetectionCounts']

# pycocotools' loadRes gives each box detection a polygon (8 coordinates)
# unless it has a 'segmentation'; bbox evaluation never reads it, so every
# detection shares this empty one (at COCO scale, 400,000 fewer lists).
_NO_SEGMENTATION: list = []


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


# ------------------------------------------------------------ evaluating

def _coco_eval(gt: dict, detections: List[dict], classes: Sequence[str],
               cat_ids: Sequence[int]) -> DetectionReport:
    """COCOeval with CocoMetric's parameters, its rounding, and the report
    that DrivingCocoMetric builds from it.

    ``COCOeval`` sorts ``params.catIds``: the class axis of its precision
    array follows the sorted ids, so each class's row is looked up by its
    category id, whatever the order of ``classes``."""
    coco_gt = NamedCategoryCOCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    img_ids = coco_gt.getImgIds()
    for det in detections:
        det.setdefault('segmentation', _NO_SEGMENTATION)
    coco_dt = coco_gt.loadRes(detections)
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
    row_of = {cat_id: k for k, cat_id in enumerate(coco_eval.params.catIds)}
    per_class = []
    for name, cat_id in zip(classes, cat_ids):
        # all IoUs and recalls, all areas, the largest maxDets
        precision = precisions[:, :, row_of[cat_id], 0, -1]
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

    Every input goes through the package's COCO checks
    (:mod:`sapool_mmdet.datasets.coco_checks`), as in training and testing.
    Ground truth and detections are restricted to ``classes``, matched by
    name; bbox AP comes from pycocotools' ``COCOeval`` with ``CocoMetric``'s
    parameters (IoU 0.5:0.95, at most 1000 detections per image) over
    every image of the ground truth (images without an object of
    ``classes`` count for false positives), so the numbers equal those of
    ``DrivingCocoMetric`` for the same predictions. Detections of other
    classes are dropped and counted. Everything is checked before anything
    is written; the report files are written atomically.

    Args:
        gt (str | dict): COCO annotation file (or its parsed dict, checked
            and filled in place) of the images the detections were
            computed on.
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
            or mmdet results without ``label_classes``; an ``out_dir``
            that is a file, before anything is read.
    """
    if out_dir is not None and os.path.exists(out_dir) and \
            not os.path.isdir(out_dir):
        raise ValueError(f'the report folder {out_dir!r} is a file; give a '
                         f'folder for {report_name}.json and .md')
    if isinstance(gt, str):
        gt_source, gt_dict = gt, load_coco_json(gt)
    else:
        gt_source = 'the ground truth'
        gt_dict = check_coco_annotations(gt, gt_source)
    cat_ids = category_ids_by_name(gt_dict['categories'], classes, gt_source)

    # Detections read here from a file are this function's own, and
    # pycocotools' loadRes may add its keys to them in place; a caller's
    # list is copied first.
    owned = isinstance(results, str)
    if owned:
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
        check_result_image_ids([entry['img_id'] for entry in entries],
                               gt_image_ids, source, gt_source,
                               'image result')
        total = other_classes + len(detections)
    else:
        if label_classes is not None:
            raise ValueError(
                f'{source} is a COCO results file, whose detections name '
                'their category ids; label classes are for mmdet results '
                'pickles only')
        check_coco_results(entries, source)
        category_of = [det['category_id'] for det in entries]
        check_result_category_ids(category_of, gt_dict['categories'],
                                  source, gt_source)
        check_result_image_ids([det['image_id'] for det in entries],
                               gt_image_ids, source, gt_source)
        kept_set = set(cat_ids)
        if kept_set.issuperset(category_of):
            detections = entries
        else:
            detections = [det for det, category_id in zip(entries, category_of)
                          if category_id in kept_set]
        del category_of
        if not owned:
            detections = [dict(det) for det in detections]
        total = len(entries)
        other_classes = total - len(detections)

    kept_counts = Counter(det['category_id'] for det in detections)
    counts = DetectionCounts(
        total, {name: kept_counts[cat_id]
                for name, cat_id in kept_ids.items()}, other_classes)
    notes = []
    if not detections:
        what = 'no detections' if total == 0 else \
            f'no detections of the evaluated classes ({total} of other ' \
            'classes dropped)'
        notes.append(f'{source} has {what}: every AP is 0 (n/a where '
                     'there is no ground truth)')

    gt_subset, _ = subset_coco(
        gt_dict, classes, keep_empty=True, source=gt_source)
    # COCOeval writes into the annotations it evaluates: give it copies
    gt_subset['annotations'] = [dict(ann) for ann in gt_subset['annotations']]
    del entries
    report = _coco_eval(gt_subset, detections, classes, cat_ids)
    files = report.write(out_dir, report_name) if out_dir is not None \
        else ()
    return ResultsEvaluation(report, counts, notes, tuple(files))
