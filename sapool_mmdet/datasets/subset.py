"""Restrict a COCO annotation file to some categories, keeping its ids."""
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Set, Tuple

from terminaltables import AsciiTable

from .classes import DRIVING_CLASSES
from ..fileio import atomic_open
from .coco_io import category_ids_by_name, load_coco_json

__all__ = [
    'ClassCount', 'FileCount', 'SubsetSummary', 'subset_coco',
    'subset_coco_file'
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
    if os.path.exists(out_json) and os.path.exists(in_json) \
            and os.path.samefile(in_json, out_json):
        raise ValueError(
            f'refusing to overwrite the input file {in_json}; '
            'choose another output path')
    coco = load_coco_json(in_json)
    subset, summary = subset_coco(coco, classes, keep_empty, source=in_json)
    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    # json.dumps takes the C encoder; json.dump would take the pure-Python
    # one, several times slower on the COCO train file.
    text = json.dumps(subset, separators=(',', ':'))
    with atomic_open(out_json, 'w', encoding='utf-8') as f:
        f.write(text)
    return summary
