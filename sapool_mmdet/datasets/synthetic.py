"""A deterministic synthetic street-scene dataset in COCO format.

Each image shows a sky, a row of buildings and a road with two to six
objects. Every class has its own colours and silhouette (a person is a tall
narrow figure in a red shirt, a car a wide blue box with wheels, a traffic
light a small dark box with three lit lamps, ...), objects barely overlap,
and the noise is mild, so a small detector learns the classes in minutes.

Besides the eight driving classes it draws four other COCO classes (stop
sign, fire hydrant, bench, potted plant) that a driving subset drops, and
every ``CROWD_EVERY``-th image holds a crowd of people annotated as one
``iscrowd=1`` region with an RLE mask. Object areas are drawn from the three
COCO size buckets (small < 32^2 px, medium, large > 96^2 px), so every
bucket of the metric has ground truth; a large object needs an image of
about 160x120 px or more.

The files use the real COCO 2017 category list (80 names, real ids):
``OUT_DIR/{train,val}/<12-digit id>.jpg`` and
``OUT_DIR/annotations/instances_{train,val}.json``, whose ``file_name`` is
relative to the split's image folder (``data_prefix=dict(img='train/')``).
"""
import json
import math
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
from mmengine.utils import ProgressBar
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from .classes import COCO2017_CATEGORIES, DRIVING_CLASSES
from ..fileio import atomic_open

__all__ = [
    'NON_DRIVING_CLASSES', 'SYNTHETIC_CLASSES', 'SIZE_RANGES', 'CROWD_EVERY',
    'render_scene', 'make_synthetic_coco'
]

NON_DRIVING_CLASSES: Tuple[str, ...] = ('stop sign', 'fire hydrant', 'bench',
                                        'potted plant')
SYNTHETIC_CLASSES: Tuple[str, ...] = DRIVING_CLASSES + NON_DRIVING_CLASSES

# Object areas in px per COCO size bucket, clear of the 32^2 and 96^2 borders.
SIZE_RANGES: Dict[str, Tuple[int, int]] = {
    'small': (400, 950),
    'medium': (1300, 8000),
    'large': (10500, 20000),
}
# Small objects are few: SSD's smallest anchors are larger than they are.
_SIZE_WEIGHTS = {'small': 0.12, 'medium': 0.48, 'large': 0.40}
_DRIVING_SHARE = 0.82
CROWD_EVERY = 20
_JPEG_QUALITY = 92
_NOISE_STD = 3.0

Box = Tuple[float, float, float, float]  # x0, y0, x1, y1 (x1, y1 exclusive)
Colour = Tuple[int, int, int]

_BLACK: Colour = (20, 20, 20)
_WHITE: Colour = (240, 240, 240)


def _pixels(x0: float, y0: float, x1: float,
            y1: float) -> Tuple[int, int, int, int]:
    """PIL's inclusive pixel corners of the box [x0, x1) x [y0, y1); at least
    one pixel, so the details of tiny objects do not vanish."""
    left, top = round(x0), round(y0)
    return left, top, max(left, round(x1) - 1), max(top, round(y1) - 1)


def _rect(draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float,
          y1: float, fill: Colour) -> None:
    draw.rectangle(_pixels(x0, y0, x1, y1), fill=fill)


def _ellipse(draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float,
             y1: float, fill: Colour) -> None:
    draw.ellipse(_pixels(x0, y0, x1, y1), fill=fill)


def _wheel(draw: ImageDraw.ImageDraw, x0: float, y1: float,
           diameter: float) -> None:
    _ellipse(draw, x0, y1 - diameter, x0 + diameter, y1, _BLACK)
    hub = diameter * 0.3
    _ellipse(draw, x0 + hub, y1 - diameter + hub, x0 + diameter - hub,
             y1 - hub, (150, 150, 150))


def _draw_person(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    head = min(w, 0.24 * h)
    _ellipse(draw, cx - head / 2, y0, cx + head / 2, y0 + head,
             (235, 195, 160))
    _rect(draw, x0, y0 + head, x1, y0 + 0.6 * h, (220, 30, 40))
    _rect(draw, x0 + 0.1 * w, y0 + 0.6 * h, cx - 0.05 * w, y1, (40, 40, 120))
    _rect(draw, cx + 0.05 * w, y0 + 0.6 * h, x1 - 0.1 * w, y1, (40, 40, 120))


def _draw_bicycle(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    wheel = min(0.7 * h, 0.45 * w)
    ring = max(1, round(wheel / 7))
    for left in (x0, x1 - wheel):
        draw.ellipse(_pixels(left, y1 - wheel, left + wheel, y1),
                     outline=_BLACK, width=ring)
    rear = (x0 + wheel / 2, y1 - wheel / 2)
    front = (x1 - wheel / 2, y1 - wheel / 2)
    seat = (x0 + 0.4 * w, y0 + 0.25 * h)
    head = (x1 - 0.3 * w, y0 + 0.25 * h)
    crank = (x0 + 0.5 * w, y1 - wheel / 2)
    bar = max(1, round(h / 12))
    for start, end in ((rear, seat), (seat, crank), (crank, rear),
                       (seat, head), (head, front), (crank, head)):
        draw.line([start, end], fill=(0, 190, 0), width=bar)
    draw.line([head, (x1 - 0.22 * w, y0 + bar / 2)], fill=_BLACK, width=bar)
    _rect(draw, x1 - 0.32 * w, y0, x1 - 0.12 * w, y0 + bar, _BLACK)
    _rect(draw, x0 + 0.3 * w, y0 + 0.15 * h, x0 + 0.5 * w, y0 + 0.25 * h,
          _BLACK)


def _draw_car(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    wheel = 0.34 * h
    body = (30, 70, 220)
    _rect(draw, x0 + 0.2 * w, y0, x1 - 0.22 * w, y0 + 0.4 * h, body)
    _rect(draw, x0, y0 + 0.35 * h, x1, y1 - 0.15 * h, body)
    glass = (170, 220, 255)
    _rect(draw, x0 + 0.25 * w, y0 + 0.08 * h, cx - 0.02 * w, y0 + 0.35 * h,
          glass)
    _rect(draw, cx + 0.02 * w, y0 + 0.08 * h, x1 - 0.27 * w, y0 + 0.35 * h,
          glass)
    _rect(draw, x1 - 0.06 * w, y0 + 0.45 * h, x1, y0 + 0.58 * h,
          (255, 230, 90))
    _wheel(draw, x0 + 0.1 * w, y1, wheel)
    _wheel(draw, x1 - 0.1 * w - wheel, y1, wheel)


def _draw_motorcycle(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    wheel = min(0.55 * h, 0.38 * w)
    _wheel(draw, x0, y1, wheel)
    _wheel(draw, x1 - wheel, y1, wheel)
    body = (255, 140, 0)
    draw.polygon([(x0 + 0.15 * w, y1 - 0.45 * h), (x0 + 0.35 * w,
                                                     y0 + 0.3 * h),
                  (x1 - 0.3 * w, y0 + 0.3 * h), (x1 - 0.18 * w,
                                                 y1 - 0.45 * h)],
                 fill=body)
    _rect(draw, x0 + 0.3 * w, y1 - 0.6 * h, x1 - 0.3 * w, y1 - 0.2 * h, body)
    _rect(draw, x0 + 0.25 * w, y0 + 0.2 * h, x0 + 0.55 * w, y0 + 0.32 * h,
          (60, 35, 20))
    bar = max(1, round(h / 12))
    draw.line([(x1 - 0.28 * w, y0 + 0.3 * h), (x1 - 0.18 * w, y0 + bar / 2)],
              fill=_BLACK, width=bar)


def _window_row(draw: ImageDraw.ImageDraw, x0: float, x1: float, y0: float,
                y1: float, count: int, fill: Colour) -> None:
    pitch = (x1 - x0) / count
    for i in range(count):
        left = x0 + i * pitch
        _rect(draw, left + 0.15 * pitch, y0, left + 0.85 * pitch, y1, fill)


def _draw_bus(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    _rect(draw, x0, y0, x1, y1 - 0.12 * h, (250, 205, 0))
    _window_row(draw, x0 + 0.04 * w, x1 - 0.04 * w, y0 + 0.12 * h,
                y0 + 0.45 * h, max(2, round(w / (0.45 * h))), (45, 45, 60))
    wheel = 0.26 * h
    _wheel(draw, x0 + 0.1 * w, y1, wheel)
    _wheel(draw, x1 - 0.1 * w - wheel, y1, wheel)


def _draw_train(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    _rect(draw, x0, y0, x1, y1 - 0.1 * h, (130, 30, 160))
    _window_row(draw, x0 + 0.03 * w, x1 - 0.03 * w, y0 + 0.15 * h,
                y0 + 0.45 * h, max(3, round(w / (0.6 * h))), (235, 235, 255))
    _rect(draw, x0, y0 + 0.6 * h, x1, y0 + 0.68 * h, _WHITE)
    _rect(draw, x0 + 0.05 * w, y1 - 0.1 * h, x1 - 0.05 * w, y1, (55, 55, 55))


def _draw_truck(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    _rect(draw, x0, y0, x0 + 0.68 * w, y1 - 0.16 * h, (110, 110, 110))
    border = max(1, 0.04 * h)
    _rect(draw, x0 + border, y0 + border, x0 + 0.68 * w - border,
          y1 - 0.16 * h - border, (225, 225, 225))
    _rect(draw, x0 + 0.7 * w, y0 + 0.3 * h, x1, y1 - 0.16 * h, (0, 150, 150))
    _rect(draw, x0 + 0.76 * w, y0 + 0.38 * h, x1 - 0.05 * w, y0 + 0.6 * h,
          (170, 220, 255))
    _rect(draw, x0, y1 - 0.24 * h, x1, y1 - 0.16 * h, (50, 50, 50))
    wheel = 0.28 * h
    _wheel(draw, x0 + 0.05 * w, y1, wheel)
    _wheel(draw, x0 + 0.07 * w + wheel, y1, wheel)
    _wheel(draw, x1 - 0.06 * w - wheel, y1, wheel)


def _draw_traffic_light(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    _rect(draw, x0, y0, x1, y1, (25, 25, 25))
    lamp = min(0.7 * w, 0.26 * h)
    for centre, colour in ((0.2, (255, 40, 40)), (0.5, (255, 200, 0)),
                           (0.8, (40, 255, 80))):
        cy = y0 + centre * h
        _ellipse(draw, cx - lamp / 2, cy - lamp / 2, cx + lamp / 2,
                 cy + lamp / 2, colour)


def _octagon(x0: float, y0: float, x1: float,
             y1: float) -> List[Tuple[float, float]]:
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx, ry = (x1 - x0) / 2, (y1 - y0) / 2
    # 22.5 degrees off the axes puts flat edges on all four sides; the
    # cos(22.5) factor stretches those edges to the box.
    stretch = 1 / math.cos(math.pi / 8)
    return [(cx + rx * stretch * math.cos(math.pi / 8 + k * math.pi / 4),
             cy + ry * stretch * math.sin(math.pi / 8 + k * math.pi / 4))
            for k in range(8)]


def _draw_stop_sign(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    draw.polygon(_octagon(x0, y0, x1 - 1, y1 - 1), fill=(200, 0, 0))
    rim = 0.1 * w
    draw.polygon(
        _octagon(x0 + rim, y0 + rim, x1 - 1 - rim, y1 - 1 - rim),
        outline=_WHITE, width=max(1, round(w / 14)))
    _rect(draw, x0 + 0.25 * w, y0 + 0.43 * h, x1 - 0.25 * w, y0 + 0.57 * h,
          _WHITE)


def _draw_fire_hydrant(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    body = (240, 90, 170)
    _ellipse(draw, x0 + 0.2 * w, y0, x1 - 0.2 * w, y0 + 0.3 * h, body)
    _rect(draw, x0 + 0.2 * w, y0 + 0.15 * h, x1 - 0.2 * w, y1, body)
    _rect(draw, x0, y0 + 0.35 * h, x1, y0 + 0.5 * h, body)
    _rect(draw, x0 + 0.1 * w, y1 - 0.12 * h, x1 - 0.1 * w, y1, (150, 40, 100))


def _draw_bench(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    wood = (140, 85, 35)
    for top, bottom in ((0.0, 0.15), (0.25, 0.4), (0.5, 0.65)):
        _rect(draw, x0, y0 + top * h, x1, y0 + bottom * h, wood)
    for left in (0.08, 0.86):
        _rect(draw, x0 + left * w, y0, x0 + (left + 0.06) * w, y1,
              (70, 45, 20))


def _draw_potted_plant(draw: ImageDraw.ImageDraw, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    _ellipse(draw, x0, y0, x1, y0 + 0.68 * h, (30, 130, 40))
    draw.polygon([(x0 + 0.2 * w, y0 + 0.6 * h), (x1 - 0.2 * w, y0 + 0.6 * h),
                  (x1 - 0.3 * w, y1 - 1), (x0 + 0.3 * w, y1 - 1)],
                 fill=(190, 95, 45))


# class name -> (width / height, how to draw it into its box)
_STYLES: Dict[str, Tuple[float, Callable[[ImageDraw.ImageDraw, Box],
                                         None]]] = {
    'person': (0.38, _draw_person),
    'bicycle': (1.7, _draw_bicycle),
    'car': (2.1, _draw_car),
    'motorcycle': (1.35, _draw_motorcycle),
    'bus': (2.8, _draw_bus),
    'train': (4.5, _draw_train),
    'truck': (2.3, _draw_truck),
    'traffic light': (0.42, _draw_traffic_light),
    'stop sign': (1.0, _draw_stop_sign),
    'fire hydrant': (0.6, _draw_fire_hydrant),
    'bench': (2.4, _draw_bench),
    'potted plant': (0.75, _draw_potted_plant),
}
_CATEGORY_IDS = {c['name']: c['id'] for c in COCO2017_CATEGORIES}
_CLASS_PROBS = np.array([
    _DRIVING_SHARE / len(DRIVING_CLASSES) if name in DRIVING_CLASSES else
    (1 - _DRIVING_SHARE) / len(NON_DRIVING_CLASSES)
    for name in SYNTHETIC_CLASSES
])


def _background(rng: np.random.Generator, width: int,
                height: int) -> Tuple[Image.Image, int]:
    """Sky, muted buildings on the horizon, pavement and a road."""
    horizon = int(height * rng.uniform(0.35, 0.45))
    rows = np.linspace(0, 1, horizon)[:, None]
    sky = (1 - rows) * np.array([120, 170, 230]) + rows * np.array(
        [190, 215, 240])
    pixels = np.empty((height, width, 3), dtype=np.float64)
    pixels[:horizon] = sky[:, None, :]
    pixels[horizon:] = (95, 95, 100)
    pavement = horizon + max(1, int(0.08 * height))
    pixels[horizon:pavement] = (160, 155, 150)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    left = 0.0
    while left < width:
        building_w = width * rng.uniform(0.08, 0.25)
        building_h = horizon * rng.uniform(0.15, 0.6)
        grey = int(rng.integers(120, 181))
        tint = rng.integers(-8, 9, size=3)
        _rect(draw, left, horizon - building_h, left + building_w, horizon,
              tuple(int(grey + t) for t in tint))
        left += building_w
    lane_y = (pavement + height) / 2
    dash = width / 8
    for i in range(0, 8, 2):
        _rect(draw, i * dash + dash / 4, lane_y, (i + 1) * dash + dash / 4,
              lane_y + max(1, 0.015 * height), _WHITE)
    return image, horizon


def _overlaps(box: Box, others: Sequence[Box]) -> bool:
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for ox0, oy0, ox1, oy1 in others:
        inter = max(0, min(x1, ox1) - max(x0, ox0)) * max(
            0, min(y1, oy1) - max(y0, oy0))
        other_area = (ox1 - ox0) * (oy1 - oy0)
        if inter > 0.1 * (area + other_area - inter) or \
                inter > 0.2 * min(area, other_area):
            return True
    return False


def _place(rng: np.random.Generator, w: int, h: int, width: int, height: int,
           horizon: int) -> Box:
    """A box of w x h inside the image whose bottom is below the horizon."""
    x0 = int(rng.integers(0, width - w + 1))
    y1 = int(rng.integers(max(h, horizon), height + 1))
    return (x0, y1 - h, x0 + w, y1)


def _object_size(rng: np.random.Generator, aspect: float, width: int,
                 height: int) -> Tuple[int, int]:
    """Width and height of an object from a random size bucket it fits in;
    (0, 0) if it fits in none."""
    buckets = list(SIZE_RANGES)
    weights = np.array([_SIZE_WEIGHTS[b] for b in buckets])
    aspect *= rng.uniform(0.85, 1.15)
    for bucket in rng.choice(buckets, size=len(buckets), replace=False,
                             p=weights / weights.sum()):
        area = rng.uniform(*SIZE_RANGES[bucket])
        w = round(math.sqrt(area * aspect))
        h = round(area / w)
        if w <= width and h <= height and \
                SIZE_RANGES[bucket][0] <= w * h <= SIZE_RANGES[bucket][1]:
            return w, h
    return 0, 0


def _crowd(rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int,
           height: int, horizon: int) -> Tuple[Box, dict]:
    """Draw a group of overlapping people; return its box and annotation."""
    region_w = max(4, int(width * rng.uniform(0.22, 0.32)))
    region_h = max(8, int(height * rng.uniform(0.16, 0.22)))
    rx0, ry0, rx1, ry1 = _place(rng, region_w, region_h, width, height,
                                horizon)
    mask = np.zeros((height, width), dtype=np.uint8)
    people = []
    for _ in range(int(rng.integers(6, 11))):
        h = max(4, int(region_h * rng.uniform(0.65, 1.0)))
        w = min(region_w, max(2, round(h * _STYLES['person'][0])))
        x0 = int(rng.integers(rx0, rx1 - w + 1))
        y1 = int(rng.integers(ry0 + h, ry1 + 1))
        people.append((x0, y1 - h, x0 + w, y1))
    for box in sorted(people, key=lambda b: b[3]):
        _draw_person(draw, box)
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    annotation = dict(
        category_id=_CATEGORY_IDS['person'],
        bbox=[x, y, w, h],
        area=float(mask_utils.area(rle)),
        iscrowd=1,
        segmentation=dict(
            size=rle['size'], counts=rle['counts'].decode('ascii')))
    return (x, y, x + w, y + h), annotation


def render_scene(rng: np.random.Generator,
                 width: int,
                 height: int,
                 with_crowd: bool = False) -> Tuple[Image.Image, List[dict]]:
    """Render one street scene.

    Args:
        rng (np.random.Generator): The only source of randomness.
        width (int): Image width in px.
        height (int): Image height in px.
        with_crowd (bool): Add a crowd of people annotated as one
            ``iscrowd=1`` region. Defaults to False.

    Returns:
        tuple[PIL.Image.Image, list[dict]]: The RGB image and its COCO
        annotations (``category_id``, ``bbox``, ``area``, ``iscrowd``,
        ``segmentation``), without ``id`` and ``image_id``.
    """
    image, horizon = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    boxes: List[Box] = []
    annotations = []
    if with_crowd:
        crowd_box, crowd_annotation = _crowd(rng, draw, width, height,
                                             horizon)
        boxes.append(crowd_box)
        annotations.append(crowd_annotation)
    objects = []
    for _ in range(int(rng.integers(2, 7))):
        name = SYNTHETIC_CLASSES[rng.choice(len(SYNTHETIC_CLASSES),
                                            p=_CLASS_PROBS)]
        w, h = _object_size(rng, _STYLES[name][0], width, height)
        if w == 0:
            continue
        for _attempt in range(20):
            box = _place(rng, w, h, width, height, horizon)
            if not _overlaps(box, boxes):
                boxes.append(box)
                objects.append((name, box))
                break
    # Farther objects (higher bottom edge) first, so nearer ones cover them.
    for name, box in sorted(objects, key=lambda item: item[1][3]):
        _STYLES[name][1](draw, box)
        x0, y0, x1, y1 = box
        annotations.append(
            dict(
                category_id=_CATEGORY_IDS[name],
                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                area=float((x1 - x0) * (y1 - y0)),
                iscrowd=0,
                segmentation=[[x0, y0, x1, y0, x1, y1, x0, y1]]))
    pixels = np.asarray(image, dtype=np.float64)
    pixels += rng.normal(0, _NOISE_STD, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), \
        annotations


def make_synthetic_coco(out_dir: str,
                        num_train: int = 400,
                        num_val: int = 100,
                        image_size: Tuple[int, int] = (320, 240),
                        seed: int = 0) -> Dict[str, str]:
    """Render the synthetic driving dataset into ``out_dir``.

    The same arguments give the same files, byte for byte: image ``i`` of a
    split is rendered from its own generator seeded with ``(seed, split,
    i)``. All images are written before the two annotation files, each of
    which is written to a temporary file and renamed, so an interrupted run
    leaves no annotation file that lists missing or partial images.

    Args:
        out_dir (str): Output folder; created if missing.
        num_train (int): Training images. Defaults to 400.
        num_val (int): Validation images. Defaults to 100.
        image_size (tuple[int, int]): (width, height) in px.
            Defaults to (320, 240).
        seed (int): Random seed. Defaults to 0.

    Returns:
        dict[str, str]: Path of the annotation file of each split
        ('train', 'val').
    """
    width, height = image_size
    if min(num_train, num_val) < 1:
        raise ValueError(
            f'num_train and num_val must be >= 1, got {num_train}, {num_val}')
    if min(width, height) < 32:
        raise ValueError(
            f'image_size must be at least 32x32 px, got {width}x{height}')
    splits = {'train': num_train, 'val': num_val}
    os.makedirs(os.path.join(out_dir, 'annotations'), exist_ok=True)
    progress = ProgressBar(num_train + num_val)
    files = {}
    for split_index, (split, num_images) in enumerate(splits.items()):
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, num_images + 1):
            rng = np.random.default_rng([seed, split_index, image_id])
            image, image_annotations = render_scene(
                rng, width, height, with_crowd=image_id % CROWD_EVERY == 1)
            file_name = f'{image_id:012d}.jpg'
            image.save(
                os.path.join(out_dir, split, file_name),
                quality=_JPEG_QUALITY)
            images.append(
                dict(
                    id=image_id,
                    file_name=file_name,
                    width=width,
                    height=height))
            for annotation in image_annotations:
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        **annotation))
            progress.update()
        files[split] = dict(
            info=dict(
                description='sapool_mmdet synthetic driving scenes',
                version='1.0',
                seed=seed),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=COCO2017_CATEGORIES)
    paths = {}
    for split, coco in files.items():
        paths[split] = os.path.join(out_dir, 'annotations',
                                    f'instances_{split}.json')
        with atomic_open(paths[split], 'w', encoding='utf-8') as f:
            json.dump(coco, f)
    return paths
