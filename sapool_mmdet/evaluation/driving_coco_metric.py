"""COCO bbox evaluation of the configured classes, matched by name, with the
Table 4-style report."""
import copy
import logging
import os
import os.path as osp
import tempfile
from collections import Counter
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from ..datasets.coco_checks import category_ids_by_name, check_predictions
from ..datasets.coco_driving import NamedCategoryCOCO
from .report import TABLE4_COLUMNS, ClassAP, DetectionReport

__all__ = ['DrivingCocoMetric']


@METRICS.register_module()
class DrivingCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` for the configured classes, with a report in
    the layout of Table 4 of Chen et al. (WACV 2023).

    Every number comes from ``CocoMetric`` and pycocotools' ``COCOeval``.
    What differs:

    - Label ``i`` is the category named ``dataset_meta['classes'][i]`` in
      ``ann_file``. ``CocoMetric`` takes the ids in file order, which
      scores a class list ordered differently from the file against the
      wrong categories. Only these categories are evaluated, on every image
      of ``ann_file`` (images without them count for false positives).
    - Per-class values (the ``<class>_precision`` keys, ``CocoMetric``'s
      class-wise table with its per-size columns, the report) belong to
      their class in any class order: ``COCOeval`` sorts
      ``params.catIds`` and ``CocoMetric`` reads its precision array by
      position, so the evaluation runs with the ids sorted and the labels
      renumbered to match.
    - ``ann_file`` is read through the package's COCO checks when the
      metric is built (the dataset reads it the same way), and the classes
      are looked up when the metric gets ``dataset_meta``; each image's
      predictions are checked as they arrive (finite boxes and scores,
      labels inside the classes).
    - A run without any detection scores 0 (n/a where a class has no
      ground truth) instead of skipping the evaluation.
    - At the end of every evaluation it logs the mAP table (@0.5, @0.75,
      @[0.5,0.95], @large, @medium, @small) and the per-class AP table, and
      writes both to ``<report_dir>/<report_name>.json`` and ``.md``,
      replacing an earlier report; a ``format_only`` run removes an
      earlier report, which would otherwise look like this run's.

    The returned metrics are ``CocoMetric``'s (``coco/bbox_mAP``, ...), so
    logging and ``save_best`` work as usual.

    In a distributed run mmengine's ``BaseMetric.evaluate`` gathers every
    process's results on rank 0 in dataset order and drops the repeats
    ``DefaultSampler`` pads the last processes' shares with; only rank 0
    computes the metrics and writes the report. An image predicted twice
    (which would count its detections twice) is an error; images of
    ``ann_file`` without a prediction are warned about (their ground truth
    counts as missed).

    Args:
        ann_file (str, optional): COCO annotation file of the evaluated
            images; without it the ground truth comes from the data samples,
            as in ``CocoMetric``. Defaults to None.
        metric (str | list[str]): As in ``CocoMetric``; must include
            'bbox'. Defaults to 'bbox'.
        classwise (bool): Compute the per-class APs of the per-class table.
            Defaults to True.
        report_dir (str, optional): Folder of the report files. Defaults to
            None: the runner's work dir, which
            :class:`~sapool_mmdet.engine.MetricWorkDirHook` (added to every
            runner) sets as :attr:`work_dir` before each evaluation; outside
            a runner the tables are only logged.
        report_name (str): File name of the report, without suffix.
            Defaults to 'driving_metrics'.
        **kwargs: Other arguments of ``CocoMetric``. ``metric_items``, if
            given, must include the six values of the Table 4 layout.
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 metric: Union[str, List[str]] = 'bbox',
                 classwise: bool = True,
                 report_dir: Optional[str] = None,
                 report_name: str = 'driving_metrics',
                 **kwargs) -> None:
        super().__init__(metric=metric, classwise=classwise, **kwargs)
        if ann_file is not None:
            with get_local_path(
                    ann_file, backend_args=self.backend_args) as local_path:
                self._coco_api = NamedCategoryCOCO(local_path, ann_file)
        if 'bbox' not in self.metrics:
            raise ValueError(
                f"DrivingCocoMetric reports bbox mAP; metric must include "
                f"'bbox', got {metric!r}")
        table_items = [key[len('bbox_'):] for key, _ in TABLE4_COLUMNS]
        if self.metric_items is not None and \
                not set(table_items) <= set(self.metric_items):
            raise ValueError(
                f'metric_items must include {table_items} for the report, '
                f'got {list(self.metric_items)}')
        self.ann_file = ann_file
        self.report_dir = report_dir
        self.report_name = report_name
        self.work_dir: Optional[str] = None

    @property
    def dataset_meta(self) -> Optional[dict]:
        """The dataset's meta information; setting it looks the classes up
        in ``ann_file``.

        Raises:
            ValueError: when set, if a class is not a category of
                ``ann_file`` (the message lists its categories).
        """
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        self._dataset_meta = copy.deepcopy(dataset_meta)
        if dataset_meta is not None and self._coco_api is not None:
            self.cat_ids = category_ids_by_name(
                list(self._coco_api.cats.values()), dataset_meta['classes'],
                source=self.ann_file or 'the ground truth')

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """``CocoMetric.process``, then check each image's predictions.

        Raises:
            CocoFormatError: if a box or score is not finite (named by
                image) or a label is not an index of the classes.
        """
        start = len(self.results)
        super().process(data_batch, data_samples)
        classes = self.dataset_meta['classes']
        for _, pred in self.results[start:]:
            check_predictions(pred['bboxes'], pred['scores'],
                              pred['labels'], classes, pred['img_id'],
                              "the model's predictions")

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute CocoMetric's metrics, then log and write the report.

        Args:
            results (list): The processed results of each batch.

        Returns:
            dict[str, float]: CocoMetric's metrics.
        """
        self._check_each_image_once(results)
        if self._coco_api is None:
            self._ground_truth_from_samples([gt for gt, _ in results])
        eval_results = self._compute_in_sorted_id_order(results)
        report_dir = self._report_dir()
        if self.format_only:
            self._remove_report(report_dir)
            return eval_results
        report = self._report(eval_results)
        print_log('\n' + report.text(), logger='current')
        if report_dir is not None:
            json_path, markdown_path = report.write(report_dir,
                                                    self.report_name)
            print_log(
                f'metric report written to {json_path} and {markdown_path}',
                logger='current')
        return eval_results

    def _ground_truth_from_samples(self, gts: List[dict]) -> None:
        # CocoMetric's conversion, read back through the COCO checks (and
        # a COCO API whose loadRes takes a run without detections)
        with tempfile.TemporaryDirectory() as tmp_dir:
            path = self.gt_to_coco_json(gts, osp.join(tmp_dir, 'results'))
            self._coco_api = NamedCategoryCOCO(path, 'the ground truth')
        self.cat_ids = category_ids_by_name(
            list(self._coco_api.cats.values()), self.dataset_meta['classes'],
            source='the ground truth')

    def _compute_in_sorted_id_order(self, results: list) -> Dict[str, float]:
        """``CocoMetric.compute_metrics`` with ``cat_ids`` sorted, as
        ``COCOeval`` sorts them, and each label renumbered to the position
        of its category id: CocoMetric reads the per-class rows of the
        precision array by position."""
        cat_ids = list(self.cat_ids)
        order = np.argsort(cat_ids, kind='stable')
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        renumbered = [(gt, dict(pred, labels=position[pred['labels']]))
                      for gt, pred in results]
        self.cat_ids = [cat_ids[i] for i in order]
        try:
            return super().compute_metrics(renumbered)
        finally:
            self.cat_ids = cat_ids

    def _remove_report(self, report_dir: Optional[str]) -> None:
        if report_dir is None:
            return
        for suffix in ('.json', '.md'):
            path = osp.join(report_dir, self.report_name + suffix)
            if osp.exists(path):
                os.remove(path)
                print_log(
                    f'format_only: removed {path}, an earlier report that '
                    'this run did not compute', logger='current',
                    level=logging.WARNING)

    def _check_each_image_once(self, results: list) -> None:
        predicted = Counter(pred['img_id'] for _, pred in results)
        repeated = sorted(i for i, n in predicted.items() if n > 1)
        if repeated:
            raise ValueError(
                f'{len(repeated)} image(s) were predicted more than once '
                f'(ids {repeated[:10]}), which would count their '
                f'detections twice; each evaluated image must appear once '
                f'in the dataset (a distributed run gathers each image '
                f'once)')
        if self._coco_api is None:
            return
        missing = set(self._coco_api.get_img_ids()) - set(predicted)
        if missing:
            print_log(
                f'{len(missing)} of the {len(self._coco_api.imgs)} images in '
                f'{self.ann_file} have no prediction (ids '
                f'{sorted(missing)[:10]}); COCOeval counts their ground '
                f'truth as missed', logger='current', level=logging.WARNING)

    def _report(self, eval_results: Dict[str, float]) -> DetectionReport:
        per_class = []
        for name, cat_id in zip(self.dataset_meta['classes'], self.cat_ids):
            gt_ids = self._coco_api.get_ann_ids(
                img_ids=self.img_ids, cat_ids=[cat_id], iscrowd=False)
            per_class.append(
                ClassAP(
                    name=name,
                    category_id=cat_id,
                    bbox_mAP=eval_results.get(f'{name}_precision'),
                    gt_instances=len(gt_ids)))
        return DetectionReport(
            summary={key: eval_results[key]
                     for key, _ in TABLE4_COLUMNS},
            per_class=per_class,
            num_images=len(self.img_ids))

    def _report_dir(self) -> Optional[str]:
        if self.report_dir is not None:
            return self.report_dir
        return self.work_dir
