"""The COCO driving subset: class lists, the dataset, subset filtering and
the synthetic street-scene generator."""
from .classes import COCO2017_CATEGORIES, DRIVING_CLASSES
from .coco_driving import CocoDrivingDataset, NamedCategoryCOCO
from .coco_io import CocoFormatError, category_ids_by_name, load_coco_json
from .subset import (ClassCount, FileCount, SubsetSummary, subset_coco,
                     subset_coco_file)
from .synthetic import (NON_DRIVING_CLASSES, SYNTHETIC_CLASSES,
                        make_synthetic_coco, render_scene)

__all__ = [
    'DRIVING_CLASSES', 'COCO2017_CATEGORIES', 'CocoDrivingDataset',
    'NamedCategoryCOCO', 'CocoFormatError', 'load_coco_json',
    'category_ids_by_name', 'subset_coco', 'subset_coco_file',
    'SubsetSummary', 'ClassCount', 'FileCount', 'make_synthetic_coco',
    'render_scene', 'SYNTHETIC_CLASSES', 'NON_DRIVING_CLASSES'
]
