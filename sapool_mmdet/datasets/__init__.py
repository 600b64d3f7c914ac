"""The COCO driving subset: class lists, the dataset, subset filtering and
the synthetic street-scene generator."""
from .classes import COCO2017_CATEGORIES, DRIVING_CLASSES
from .coco_checks import (CocoFilledWarning, CocoFormatError,
                          category_ids_by_name, check_coco_annotations,
                          check_coco_results, load_coco_json,
                          load_coco_results)
from .coco_driving import CocoDrivingDataset, NamedCategoryCOCO
from .subset import (ClassCount, ClassDetections, FileCount,
                     ResultsSubsetSummary, SubsetSummary, subset_coco,
                     subset_coco_file, subset_results, subset_results_file)
from .synthetic import (NON_DRIVING_CLASSES, SYNTHETIC_CLASSES,
                        make_synthetic_coco, render_scene)

__all__ = [
    'DRIVING_CLASSES', 'COCO2017_CATEGORIES', 'CocoDrivingDataset',
    'NamedCategoryCOCO', 'CocoFormatError', 'CocoFilledWarning',
    'load_coco_json', 'check_coco_annotations',
    'category_ids_by_name', 'check_coco_results', 'load_coco_results',
    'subset_coco', 'subset_coco_file', 'SubsetSummary', 'ClassCount',
    'FileCount', 'subset_results', 'subset_results_file',
    'ResultsSubsetSummary', 'ClassDetections', 'make_synthetic_coco',
    'render_scene', 'SYNTHETIC_CLASSES', 'NON_DRIVING_CLASSES'
]
