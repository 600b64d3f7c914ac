"""COCO bbox evaluation of the configured classes, matched by name, with the
Table 4-style report."""
import logging
from collections import Counter
from typing import Dict, List, Optional, Union

from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmengine.logging import print_log

from ..datasets.coco_io import category_ids_by_name
from .report import TABLE4_COLUMNS, ClassAP, DetectionReport

__all__ = ['DrivingCocoMetric']


@METRICS.register_module()
class DrivingCocoMetric(CocoMetric):
    """mmdet's ``CocoMetric`` for the configured classes, with a report in
    the layout of Table 4 of Chen et al. (WACV 2023).

    Every number comes from ``CocoMetric`` and pycocotools' ``COCOeval``.
    Two things differ:

    - Label ``i`` is the category named ``dataset_meta['classes'][i]`` in
      ``ann_file``. ``CocoMetric`` takes the ids in file order, which
      scores a class list ordered differently from the file against the
      wrong categories. Only these categories are evaluated, on every image
      of ``ann_file`` (images without them count for false positives).
    - At the end of every evaluation it logs the mAP table (@0.5, @0.75,
      @[0.5,0.95], @large, @medium, @small) and the per-class AP table, and
      writes both to ``<report_dir>/<report_name>.json`` and ``.md``.

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
        super().__init__(
            ann_file=ann_file, metric=metric, classwise=classwise, **kwargs)
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

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute CocoMetric's metrics, then log and write the report.

        Args:
            results (list): The processed results of each batch.

        Returns:
            dict[str, float]: CocoMetric's metrics.
        """
        if self._coco_api is not None:
            self.cat_ids = category_ids_by_name(
                list(self._coco_api.cats.values()),
                self.dataset_meta['classes'],
                source=self.ann_file or 'the ground truth')
        self._check_each_image_once(results)
        eval_results = super().compute_metrics(results)
        if self.format_only:
            return eval_results
        if 'bbox_mAP' not in eval_results:
            print_log(
                'no detection on any image: CocoMetric computed no bbox '
                'mAP, so there is no report', logger='current',
                level=logging.WARNING)
            return eval_results
        report = self._report(eval_results)
        print_log('\n' + report.text(), logger='current')
        report_dir = self._report_dir()
        if report_dir is not None:
            json_path, markdown_path = report.write(report_dir,
                                                    self.report_name)
            print_log(
                f'metric report written to {json_path} and {markdown_path}',
                logger='current')
        return eval_results

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
