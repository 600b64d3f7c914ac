"""Reading COCO annotation and results files with clear errors."""
import json
import math
from collections import Counter
from numbers import Real
from typing import List, Mapping, Sequence

__all__ = [
    'CocoFormatError', 'load_coco_json', 'category_ids_by_name',
    'check_coco_results', 'load_coco_results'
]


class CocoFormatError(ValueError):
    """A file is not a readable COCO detection annotation file."""


def _check_entries(path: str, section: str, entries, keys: Sequence[str]):
    if not isinstance(entries, list):
        raise CocoFormatError(
            f'{path}: "{section}" must be a list, got '
            f'{type(entries).__name__}')
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or any(k not in entry for k in keys):
            raise CocoFormatError(
                f'{path}: {section}[{index}] must be an object with the keys '
                f'{list(keys)}, got {str(entry)[:200]}')


def _read_json(path: str):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except OSError as error:
        raise CocoFormatError(
            f'cannot read {path}: {error.strerror or error}') from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CocoFormatError(f'{path} is not valid JSON: {error}') from error


def load_coco_json(path: str) -> dict:
    """Load a COCO detection annotation file and check its structure.

    Checks what the subset tools rely on: the sections ``images``,
    ``annotations`` and ``categories`` are lists of objects with ids, and
    every annotation refers to an image of the file.

    Args:
        path (str): Path of a COCO-format JSON file.

    Returns:
        dict: The parsed file.

    Raises:
        CocoFormatError: if the file cannot be read, is not JSON or is not
            a COCO detection file; the message names the file and the
            first problem found.
    """
    coco = _read_json(path)
    if isinstance(coco, list):
        raise CocoFormatError(
            f'{path}: a COCO file holds a JSON object, got a list (a list '
            'of detections is a COCO results file, not an annotation file)')
    if not isinstance(coco, dict):
        raise CocoFormatError(
            f'{path}: a COCO file holds a JSON object, got '
            f'{type(coco).__name__}')
    missing = [key for key in ('images', 'annotations', 'categories')
               if key not in coco]
    if missing:
        raise CocoFormatError(
            f'{path}: not a COCO detection file, it has no {missing} '
            f'(top-level keys: {sorted(coco)})')
    _check_entries(path, 'categories', coco['categories'], ('id', 'name'))
    _check_entries(path, 'images', coco['images'], ('id', ))
    _check_entries(path, 'annotations', coco['annotations'],
                   ('id', 'image_id', 'category_id'))
    image_ids = {image['id'] for image in coco['images']}
    for ann in coco['annotations']:
        if ann['image_id'] not in image_ids:
            raise CocoFormatError(
                f'{path}: annotation {ann["id"]} refers to image '
                f'{ann["image_id"]}, which is not in "images"')
    return coco


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
    ids_by_name = {}
    for category in categories:
        if category['name'] in ids_by_name:
            raise CocoFormatError(
                f'{source}: two categories are named "{category["name"]}"')
        ids_by_name[category['name']] = category['id']
    unknown = [name for name in names if name not in ids_by_name]
    if unknown:
        raise ValueError(
            f'{source} has no categor{"y" if len(unknown) == 1 else "ies"} '
            f'named {", ".join(map(repr, unknown))}; its categories are: '
            f'{", ".join(map(repr, ids_by_name)) or "none"}')
    return [ids_by_name[name] for name in names]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_coco_results(detections, source: str = 'the results') -> list:
    """Check that ``detections`` is a COCO results list.

    A COCO results file is a JSON list of detections
    ``{"image_id", "category_id", "bbox": [x, y, width, height], "score"}``
    (what pycocotools' ``COCO.loadRes`` reads and mmdet's ``CocoMetric``
    writes with ``outfile_prefix``). Ids are not checked here: that needs
    the ground truth.

    Args:
        detections: The parsed file.
        source (str): What to call the file in error messages.
            Defaults to 'the results'.

    Returns:
        list[dict]: ``detections``, unchanged.

    Raises:
        CocoFormatError: at the first entry that is not a detection, or
            whose bbox is not four finite numbers with width and height
            >= 0, or whose score is not a finite number.
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
    keys = ('image_id', 'category_id', 'bbox', 'score')
    for index, det in enumerate(detections):
        if not isinstance(det, dict) or any(k not in det for k in keys):
            raise CocoFormatError(
                f'{source}: detection {index} must be an object with the '
                f'keys {list(keys)}, got {str(det)[:200]}')
        bbox = det['bbox']
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                and all(map(_is_number, bbox)) and bbox[2] >= 0
                and bbox[3] >= 0):
            raise CocoFormatError(
                f'{source}: detection {index} (image {det["image_id"]!r}) '
                f'has a malformed bbox {str(bbox)[:200]}: a COCO bbox is '
                '[x, y, width, height], four finite numbers with width '
                'and height >= 0')
        if not _is_number(det['score']):
            raise CocoFormatError(
                f'{source}: detection {index} (image {det["image_id"]!r}) '
                f'has the score {det["score"]!r}; a score is a finite '
                'number')
    return detections


def load_coco_results(path: str) -> list:
    """Load a COCO results file and check its structure.

    Args:
        path (str): Path of a COCO results JSON file (a list of
            ``{image_id, category_id, bbox, score}``).

    Returns:
        list[dict]: The detections.

    Raises:
        CocoFormatError: if the file cannot be read, is not JSON or is not
            a results list (see :func:`check_coco_results`).
    """
    return check_coco_results(_read_json(path), source=path)
