"""Restrict a COCO annotation file, or a COCO results file, to some
categories, keeping its ids."""
import json
import os
from dataclasses import dataclass
from typing import (Dict, Iterable, List, Mapping, Optional, Sequence, Set,
                    Tuple)

from terminaltables import AsciiTable

from .classes import DRIVING_CLASSES
from ..fileio import atomic_open
from .coco_checks import (category_ids_by_name, check_coco_results,
                          check_result_category_ids, check_result_image_ids,
                          load_coco_json, load_coco_results)

__all__ = [
    'ClassCount', 'FileCount', 'SubsetSummary', 'subset_coco',
    'subset_coco_file', 'ClassDetections', 'ResultsSubsetSummary',
    'subset_results', 'subset_results_file'
]


@dataclass
class ClassCount:
    """Images and annotations of one kept category."""
    name: str
    category_id: int
    images: int
    instances: int
    crowd: int


@dataclass
class FileCount:
    """Sizes of the sections of a COCO file."""
    categories: int
    images: int
    annotations: int


@dataclass
class SubsetSummary:
    """What :func:`subset_coco` kept.

    Every annotation of a kept category is kept, so ``classes`` counts hold
    before and after the subset.
    """
    classes: List[ClassCount]
    before: FileCount
    after: FileCount

    def table(self) -> str:
        """Return the per-class counts and the totals as text tables."""
        per_class = [['class', 'category id', 'images', 'instances', 'crowd']]
        per_class += [[c.name, c.category_id, c.images, c.instances, c.crowd]
                      for c in self.classes]
        totals = [['', 'categories', 'images', 'annotations']]
        for label, count in (('before', self.before), ('after', self.after)):
            totals.append(
                [label, count.categories, count.images, count.annotations])
        return '\n'.join((AsciiTable(per_class, 'kept classes').table,
                          AsciiTable(totals, 'totals').table))


def _file_count(coco: dict) -> FileCount:
    return FileCount(
        categories=len(coco['categories']),
        images=len(coco['images']),
        annotations=len(coco['annotations']))


def subset_coco(
        coco: dict,
        classes: Sequence[str] = DRIVING_CLASSES,
        keep_empty: bool = False,
        source: str = 'the annotation file') -> Tuple[dict, SubsetSummary]:
    """Restrict a COCO dict to the categories named ``classes``.

    One pass over the annotations; the result shares its entries with
    ``coco`` (no copies), so a 118k-image file costs little beyond loading
    it. Category, image and annotation ids are kept, so predictions stay
    comparable with the full file. Top-level sections other than
    ``images``, ``annotations`` and ``categories`` (``info``,
    ``licenses``) are kept as they are.

    Args:
        coco (dict): A COCO detection file, as :func:`load_coco_json`
            returns it.
        classes (Sequence[str]): Names of the categories to keep.
            Defaults to :data:`DRIVING_CLASSES`.
        keep_empty (bool): Keep the images without an annotation of the
            kept categories. Defaults to False.
        source (str): What to call the file in error messages.
            Defaults to 'the annotation file'.

    Returns:
        tuple[dict, SubsetSummary]: The subset and its counts.

    Raises:
        ValueError: if a class is not a category of the file; the message
            lists the file's categories.
    """
    category_ids = category_ids_by_name(coco['categories'], classes, source)
    images_of: Dict[int, Set[int]] = {cat_id: set() for cat_id in category_ids}
    instances_of = dict.fromkeys(category_ids, 0)
    crowd_of = dict.fromkeys(category_ids, 0)
    annotations = []
    for ann in coco['annotations']:
        category_id = ann['category_id']
        if category_id not in images_of:
            continue
        annotations.append(ann)
        images_of[category_id].add(ann['image_id'])
        instances_of[category_id] += 1
        crowd_of[category_id] += bool(ann.get('iscrowd', 0))

    if keep_empty:
        images = coco['images']
    else:
        kept_image_ids = set().union(*images_of.values())
        images = [img for img in coco['images'] if img['id'] in kept_image_ids]
    kept_category_ids = set(category_ids)
    subset = dict(coco)
    subset.update(
        images=images,
        annotations=annotations,
        categories=[
            c for c in coco['categories'] if c['id'] in kept_category_ids
        ])
    summary = SubsetSummary(
        classes=[
            ClassCount(name, cat_id, len(images_of[cat_id]),
                       instances_of[cat_id], crowd_of[cat_id])
            for name, cat_id in zip(classes, category_ids)
        ],
        before=_file_count(coco),
        after=_file_count(subset))
    return subset, summary


def _refuse_overwrite(out_json: str, *in_jsons: str) -> None:
    for in_json in in_jsons:
        if os.path.exists(out_json) and os.path.exists(in_json) \
                and os.path.samefile(in_json, out_json):
            raise ValueError(
                f'refusing to overwrite the input file {in_json}; '
                'choose another output path')


def _write_json(data, out_json: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    # json.dumps takes the C encoder; json.dump would take the pure-Python
    # one, several times slower on the COCO train file.
    text = json.dumps(data, separators=(',', ':'))
    with atomic_open(out_json, 'w', encoding='utf-8') as f:
        f.write(text)


def subset_coco_file(in_json: str,
                     out_json: str,
                     classes: Sequence[str] = DRIVING_CLASSES,
                     keep_empty: bool = False) -> SubsetSummary:
    """Write the subset of a COCO file to another file.

    The output is written to a temporary file in its directory and renamed,
    so an interrupted run never leaves a partial ``out_json``.

    Args:
        in_json (str): The COCO annotation file to read.
        out_json (str): Where to write the subset; missing directories are
            created. Must not be ``in_json``.
        classes (Sequence[str]): Names of the categories to keep.
            Defaults to :data:`DRIVING_CLASSES`.
        keep_empty (bool): Keep the images without an annotation of the
            kept categories. Defaults to False.

    Returns:
        SubsetSummary: The counts before and after.

    Raises:
        ValueError: if ``out_json`` is ``in_json``, if a class is unknown, or
            (as :class:`CocoFormatError`) if ``in_json`` cannot be read or is
            not a COCO file.
    """
    _refuse_overwrite(out_json, in_json)
    coco = load_coco_json(in_json)
    subset, summary = subset_coco(coco, classes, keep_empty, source=in_json)
    _write_json(subset, out_json)
    return summary


@dataclass
class ClassDetections:
    """Kept detections of one category and the images they are on."""
    name: str
    category_id: int
    images: int
    detections: int


@dataclass
class ResultsSubsetSummary:
    """What :func:`subset_results` kept.

    Args:
        classes (list[ClassDetections]): One entry per kept class, in the
            order asked for.
        before (int): Detections in the file.
        after (int): Detections kept.
    """
    classes: List[ClassDetections]
    before: int
    after: int

    def table(self) -> str:
        """Return the per-class counts and the totals as text tables."""
        per_class = [['class', 'category id', 'images', 'detections']]
        per_class += [[c.name, c.category_id, c.images, c.detections]
                      for c in self.classes]
        totals = [['', 'detections'], ['before', self.before],
                  ['after', self.after],
                  ['dropped', self.before - self.after]]
        return '\n'.join((AsciiTable(per_class, 'kept classes').table,
                          AsciiTable(totals, 'totals').table))


def subset_results(detections: list,
                   categories: Sequence[Mapping],
                   classes: Sequence[str] = DRIVING_CLASSES,
                   source: str = 'the results',
                   gt_source: str = 'the annotation file',
                   gt_image_ids: Optional[Iterable] = None
                   ) -> Tuple[list, ResultsSubsetSummary]:
    """Restrict a COCO results list to the categories named ``classes``.

    A results file names categories by id only, so the ground truth's
    ``categories`` give the names. Detections keep their ids, order and
    every field; the result shares its entries with ``detections``.
    Detections on category ids (or, given ``gt_image_ids``, images) the
    ground truth does not have are refused, as
    :func:`~sapool_mmdet.evaluation.evaluate_results` refuses them: they
    mean results made against another file, or label indices written as
    category ids, and dropping them would hide it.

    Args:
        detections (list): A COCO results list
            (``{image_id, category_id, bbox, score}``); it is checked with
            :func:`check_coco_results`.
        categories (Sequence[Mapping]): The ``categories`` section of the
            ground truth: entries with ``id`` and ``name``.
        classes (Sequence[str]): Names of the categories to keep.
            Defaults to :data:`DRIVING_CLASSES`.
        source (str): What to call the results in error messages.
            Defaults to 'the results'.
        gt_source (str): What to call the ground truth in error messages.
            Defaults to 'the annotation file'.
        gt_image_ids (Iterable, optional): The ground truth's image ids;
            detections on other images are refused. Defaults to None (not
            checked).

    Returns:
        tuple[list, ResultsSubsetSummary]: The kept detections and counts.

    Raises:
        ValueError: if a class is not a category of the ground truth (the
            message lists its categories), or (as :class:`CocoFormatError`)
            if ``detections`` is not a COCO results list or holds category
            or image ids the ground truth does not have.
    """
    check_coco_results(detections, source)
    category_ids = category_ids_by_name(categories, classes, gt_source)
    check_result_category_ids([det['category_id'] for det in detections],
                              categories, source, gt_source)
    if gt_image_ids is not None:
        check_result_image_ids([det['image_id'] for det in detections],
                               gt_image_ids, source, gt_source)
    images_of: Dict[int, Set] = {cat_id: set() for cat_id in category_ids}
    detections_of = dict.fromkeys(category_ids, 0)
    kept = []
    for det in detections:
        category_id = det['category_id']
        if category_id in images_of:
            kept.append(det)
            images_of[category_id].add(det['image_id'])
            detections_of[category_id] += 1
    summary = ResultsSubsetSummary(
        classes=[
            ClassDetections(name, cat_id, len(images_of[cat_id]),
                            detections_of[cat_id])
            for name, cat_id in zip(classes, category_ids)
        ],
        before=len(detections),
        after=len(kept))
    return kept, summary


def subset_results_file(
        in_json: str,
        out_json: str,
        gt_json: str,
        classes: Sequence[str] = DRIVING_CLASSES) -> ResultsSubsetSummary:
    """Write the detections of a COCO results file of some classes to
    another file, atomically.

    Args:
        in_json (str): The COCO results file to read.
        out_json (str): Where to write the kept detections; missing
            directories are created. Must be neither input file.
        gt_json (str): The COCO annotation file whose ``categories`` name
            the results' category ids.
        classes (Sequence[str]): Names of the categories to keep.
            Defaults to :data:`DRIVING_CLASSES`.

    Returns:
        ResultsSubsetSummary: The counts before and after.

    Raises:
        ValueError: if ``out_json`` is an input file, if a class is unknown,
            or (as :class:`CocoFormatError`) if a file cannot be read or
            has the wrong structure, or the results hold category or image
            ids ``gt_json`` does not have.
    """
    _refuse_overwrite(out_json, in_json, gt_json)
    gt = load_coco_json(gt_json)
    detections = load_coco_results(in_json)
    kept, summary = subset_results(
        detections, gt['categories'], classes, source=in_json,
        gt_source=gt_json, gt_image_ids=[img['id'] for img in gt['images']])
    _write_json(kept, out_json)
    return summary
