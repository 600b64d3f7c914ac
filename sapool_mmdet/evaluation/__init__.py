"""COCO evaluation of the driving classes with the Table 4-style report,
inside an mmdet run or of a detector's saved results."""
from .convert import (label_classes_from_config, mmdet_results_to_coco,
                      resolve_label_classes)
from .driving_coco_metric import DrivingCocoMetric
from .report import TABLE4_COLUMNS, ClassAP, DetectionReport
from .results import DetectionCounts, ResultsEvaluation, evaluate_results
from .results_io import load_mmdet_results, load_results

__all__ = [
    'DrivingCocoMetric', 'DetectionReport', 'ClassAP', 'TABLE4_COLUMNS',
    'evaluate_results', 'ResultsEvaluation', 'DetectionCounts',
    'load_results', 'load_mmdet_results', 'mmdet_results_to_coco',
    'resolve_label_classes', 'label_classes_from_config'
]
