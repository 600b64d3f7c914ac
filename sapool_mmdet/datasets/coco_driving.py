"""COCO restricted, by class name, to a list of classes (default: the eight
driving classes)."""
from typing import List, Optional, Sequence

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS

from .classes import DRIVING_CLASSES
from .coco_io import category_ids_by_name

__all__ = ['NamedCategoryCOCO', 'CocoDrivingDataset']


class NamedCategoryCOCO(COCO):
    """mmdet's COCO API whose :meth:`get_cat_ids` looks categories up by name
    in the order given.

    mmdet's ``CocoDataset`` numbers labels in the order ``get_cat_ids``
    returns; pycocotools returns ids in file order and skips unknown names,
    which mislabels a class list ordered differently from the file.

    Args:
        annotation_file (str, optional): Path of the COCO JSON file.
            Defaults to None.
    """

    def __init__(self, annotation_file: Optional[str] = None) -> None:
        self.annotation_file = annotation_file
        super().__init__(annotation_file)

    def get_cat_ids(self, cat_names: Sequence[str]) -> List[int]:
        """Return the ids of the categories named ``cat_names``, in order.

        Args:
            cat_names (Sequence[str]): Category names.

        Returns:
            list[int]: ``ids[i]`` is the id of ``cat_names[i]``.

        Raises:
            ValueError: if a name is not a category of the file; the message
                lists the categories the file has.
        """
        return category_ids_by_name(
            list(self.cats.values()), cat_names,
            source=self.annotation_file or 'the annotation file')


@DATASETS.register_module()
class CocoDrivingDataset(CocoDataset):
    """A COCO-format dataset restricted to the configured classes by name.

    The default classes are :data:`DRIVING_CLASSES`, the eight COCO driving
    classes of Chen et al. (WACV 2023, Sec. 6.1). Label ``i`` is the class
    ``metainfo['classes'][i]`` whatever the order of category ids in the
    file, and the file's category and image ids are kept. Annotations of
    other classes are dropped; crowd annotations become ignore regions
    (``ignore_flag=1``). In training, images without a non-crowd object of
    the configured classes are dropped (they have nothing to learn from); in
    ``test_mode`` every image is kept, since detections on them are false
    positives that the metric must see.

    It takes the arguments of mmdet's ``CocoDataset``; other classes are set
    with ``metainfo=dict(classes=(...))``.

    Raises:
        ValueError: when loading, if a configured class is not a category of
            the annotation file; the message lists the file's categories.
    """

    METAINFO = dict(classes=DRIVING_CLASSES)
    COCOAPI = NamedCategoryCOCO

    def filter_data(self) -> List[dict]:
        """Apply ``filter_cfg`` as mmdet does, then, in training, drop
        images without a non-crowd instance of the configured classes.

        Returns:
            list[dict]: The kept data infos.
        """
        data_list = super().filter_data()
        if self.test_mode:
            return data_list
        return [
            data_info for data_info in data_list if any(
                not instance['ignore_flag']
                for instance in data_info['instances'])
        ]
