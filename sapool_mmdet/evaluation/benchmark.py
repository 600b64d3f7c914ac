"""How fast :func:`~.results.evaluate_results` (``tools/eval_driving.py``)
is against pycocotools run directly on the same files, at COCO scale."""
import json
import os
import os.path as osp
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from terminaltables import AsciiTable

from ..datasets.classes import COCO2017_CATEGORIES
from ..fileio import atomic_open

__all__ = [
    'make_coco_scale_files', 'coco_scale_files_match', 'ProcessCost',
    'benchmark_eval', 'cost_table'
]

# pycocotools' COCOeval with the parameters evaluate_results uses
# (CocoMetric's: IoU 0.50:0.95, at most 100/300/1000 detections per image);
# it prints its summary like the tool does.
_PYCOCOTOOLS = '''
import sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
import numpy as np
gt = COCO(sys.argv[1])
coco_eval = COCOeval(gt, gt.loadRes(sys.argv[2]), 'bbox')
coco_eval.params.maxDets = [100, 300, 1000]
coco_eval.params.iouThrs = np.linspace(.5, .95, 10)
coco_eval.evaluate()
coco_eval.accumulate()
coco_eval.summarize()
'''
_IMPORT_ONLY = 'import sapool_mmdet.evaluation'


def make_coco_scale_files(out_dir: str,
                          num_images: int = 5000,
                          num_boxes: int = 37000,
                          num_detections: int = 400000,
                          seed: int = 0) -> Tuple[str, str]:
    """Write a COCO val-sized annotation file and a results file for it.

    ``num_boxes`` boxes over the 80 COCO 2017 categories (1 % crowd) on
    ``num_images`` 640x480 images, and ``num_detections`` detections: two
    jittered detections of the right class per box, the rest random boxes
    on the images with objects, 70 % of them of a class the image has.

    Args:
        out_dir (str): Folder of ``gt.json`` and ``results.json``.
        num_images (int): Images. Defaults to 5000 (COCO val2017).
        num_boxes (int): Ground-truth boxes. Defaults to 37000.
        num_detections (int): Detections. Defaults to 400000.
        seed (int): Random seed. Defaults to 0.

    Returns:
        tuple[str, str]: Paths of the annotation and the results file.
    """
    if min(num_images, num_boxes, num_detections) < 1 or \
            num_detections < 2 * num_boxes:
        raise ValueError(
            'need at least one image and box, and at least two detections '
            f'per box, got {num_images} images, {num_boxes} boxes and '
            f'{num_detections} detections')
    rng = np.random.default_rng(seed)
    width, height = 640, 480
    category_ids = np.array([c['id'] for c in COCO2017_CATEGORIES])

    def boxes(n: int, sides: np.ndarray) -> np.ndarray:
        w = np.clip(sides * rng.uniform(0.6, 1.6, n), 2, width - 1)
        h = np.clip(sides * rng.uniform(0.6, 1.6, n), 2, height - 1)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        return np.round(np.stack([x, y, w, h], axis=1), 2)

    # object sides spread over COCO's small, medium and large buckets
    gt_boxes = boxes(num_boxes, np.exp(rng.uniform(np.log(8), np.log(300),
                                                   num_boxes)))
    gt_images = rng.integers(1, num_images + 1, num_boxes)
    gt_categories = rng.choice(category_ids, num_boxes)
    crowd = rng.random(num_boxes) < 0.01
    gt = dict(
        info=_sizes_info(num_images, num_boxes, num_detections, seed),
        images=[dict(id=i, file_name=f'{i:012d}.jpg', width=width,
                     height=height) for i in range(1, num_images + 1)],
        annotations=[
            dict(id=k + 1, image_id=int(image_id), category_id=int(cat_id),
                 bbox=box.tolist(), area=round(float(box[2] * box[3]), 2),
                 iscrowd=int(is_crowd))
            for k, (image_id, cat_id, box, is_crowd) in enumerate(
                zip(gt_images, gt_categories, gt_boxes, crowd))
        ],
        categories=COCO2017_CATEGORIES)

    jitter = rng.normal(1, 0.08, (2 * num_boxes, 4))
    near = np.round(np.repeat(gt_boxes, 2, axis=0) * jitter, 2)
    near[:, 2:] = np.maximum(near[:, 2:], 1)
    num_random = num_detections - 2 * num_boxes
    far = boxes(num_random, np.exp(rng.uniform(np.log(8), np.log(300),
                                               num_random)))
    # false positives as a detector makes them: on the images with objects,
    # mostly of the classes there (70 %), the rest of any class
    beside = rng.integers(0, num_boxes, num_random)
    other_class = rng.random(num_random) >= 0.7
    far_categories = gt_categories[beside]
    far_categories[other_class] = rng.choice(category_ids,
                                             int(other_class.sum()))
    det_boxes = np.concatenate([near, far])
    det_images = np.concatenate([np.repeat(gt_images, 2),
                                 gt_images[beside]])
    det_categories = np.concatenate([np.repeat(gt_categories, 2),
                                     far_categories])
    scores = np.round(rng.random(num_detections), 4)
    results = [
        dict(image_id=int(image_id), category_id=int(cat_id),
             bbox=box.tolist(), score=float(score))
        for image_id, cat_id, box, score in zip(det_images, det_categories,
                                                det_boxes, scores)
    ]
    os.makedirs(out_dir, exist_ok=True)
    paths = _paths(out_dir)
    # results first: gt.json, which records the sizes, completes the pair
    for path, data in reversed(list(zip(paths, (gt, results)))):
        text = json.dumps(data, separators=(',', ':'))
        with atomic_open(path, 'w', encoding='utf-8') as f:
            f.write(text)
    return paths


def _paths(out_dir: str) -> Tuple[str, str]:
    return osp.join(out_dir, 'gt.json'), osp.join(out_dir, 'results.json')


def _sizes_info(num_images: int, num_boxes: int, num_detections: int,
                seed: int) -> dict:
    return dict(description='sapool_mmdet.evaluation.benchmark.'
                'make_coco_scale_files', images=num_images, boxes=num_boxes,
                detections=num_detections, seed=seed)


def coco_scale_files_match(out_dir: str,
                           num_images: int = 5000,
                           num_boxes: int = 37000,
                           num_detections: int = 400000,
                           seed: int = 0) -> bool:
    """Whether ``out_dir`` holds the files :func:`make_coco_scale_files`
    writes for these sizes (its ``gt.json`` records them), so that a
    benchmark can reuse them instead of timing files of other sizes."""
    gt_json, results_json = _paths(out_dir)
    if not (osp.isfile(gt_json) and osp.isfile(results_json)):
        return False
    try:
        with open(gt_json, encoding='utf-8') as f:
            info = json.load(f).get('info')
    except (OSError, ValueError, AttributeError):
        return False
    return info == _sizes_info(num_images, num_boxes, num_detections, seed)


@dataclass
class ProcessCost:
    """Wall time, CPU time and peak resident memory of one process.

    Args:
        name (str): What ran.
        seconds (float): Wall time, start to exit.
        cpu_seconds (float): User + system CPU time; on a machine shared
            with other work it varies less than the wall time.
        peak_mib (float): Peak resident set size (``ru_maxrss``), MiB.
    """
    name: str
    seconds: float
    cpu_seconds: float
    peak_mib: float


def _run(name: str, command: List[str]) -> ProcessCost:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    # wait4 gives this child's own rusage (getrusage(RUSAGE_CHILDREN)
    # would give the largest of all children so far)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors='replace')
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f'{name} failed ({process.returncode}):\n'
                           f'{stderr[-2000:]}')
    return ProcessCost(name, seconds, usage.ru_utime + usage.ru_stime,
                       usage.ru_maxrss / 1024)


def benchmark_eval(gt_json: str,
                   results_json: str,
                   tool: str,
                   repeats: int = 1,
                   python: Optional[str] = None) -> List[ProcessCost]:
    """Time ``tools/eval_driving.py`` on all 80 classes against pycocotools
    run directly, each in its own process, alternating, ``repeats`` times.

    The tool's process also imports torch, mmengine and mmdet (importing
    the package registers everything); an import-only process shows how
    much of its time and memory that is.

    Args:
        gt_json (str): COCO annotation file.
        results_json (str): COCO results file.
        tool (str): Path of ``tools/eval_driving.py``.
        repeats (int): Runs of each. Defaults to 1.
        python (str, optional): Interpreter. Defaults to None: this one.

    Returns:
        list[ProcessCost]: The best (least CPU time) run of pycocotools,
        of the tool and of the import alone, in this order.
    """
    python = python or sys.executable
    with open(gt_json, encoding='utf-8') as f:
        names = [c['name'] for c in json.load(f)['categories']]
    commands = {
        'pycocotools directly': [python, '-c', _PYCOCOTOOLS, gt_json,
                                 results_json],
        'tools/eval_driving.py': [python, tool, gt_json, results_json,
                                  '--classes', *names, '--out-dir',
                                  osp.join(osp.dirname(results_json),
                                           'report')],
        'import sapool_mmdet only': [python, '-c', _IMPORT_ONLY],
    }
    best = {}
    for _ in range(repeats):
        for name, command in commands.items():
            cost = _run(name, command)
            if name not in best or \
                    cost.cpu_seconds < best[name].cpu_seconds:
                best[name] = cost
    return list(best.values())


def cost_table(costs: List[ProcessCost]) -> str:
    """The costs as a text table, with the ratios to the first row."""
    base = costs[0]
    rows = [['process', 'wall (s)', 'CPU (s)', 'peak RSS (MiB)',
             'wall ratio', 'CPU ratio', 'memory ratio']]
    rows += [[c.name, f'{c.seconds:.1f}', f'{c.cpu_seconds:.1f}',
              f'{c.peak_mib:.0f}', f'{c.seconds / base.seconds:.2f}x',
              f'{c.cpu_seconds / base.cpu_seconds:.2f}x',
              f'{c.peak_mib / base.peak_mib:.2f}x'] for c in costs]
    return AsciiTable(rows, 'COCO-scale evaluation').table
