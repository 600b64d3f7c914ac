"""COCO evaluation of the driving classes with the Table 4-style report."""
from .driving_coco_metric import DrivingCocoMetric
from .report import TABLE4_COLUMNS, ClassAP, DetectionReport

__all__ = ['DrivingCocoMetric', 'DetectionReport', 'ClassAP', 'TABLE4_COLUMNS']
