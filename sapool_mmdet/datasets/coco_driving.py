"""COCO restricted, by class name, to a list of classes (default: the eight
driving classes)."""
from typing import List, Optional, Sequence, Union

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS

from .classes import DRIVING_CLASSES
from .coco_checks import (category_ids_by_name, check_coco_annotations,
                          check_image_files, load_coco_json)

__all__ = ['NamedCategoryCOCO', 'CocoDrivingDataset']


class NamedCategoryCOCO(COCO):
    """mmdet's COCO API over a file read through this package's COCO checks,
    whose :meth:`get_cat_ids` looks categories up by name in the order
    given, and whose :meth:`loadRes` takes an empty result list.

    The file is read with :func:`~.coco_checks.load_coco_json`, so the
    dataset, the metric and the offline tools accept and refuse the same
    files (and fill a missing ``iscrowd``/``area`` the same way). mmdet's
    ``CocoDataset`` numbers labels in the order ``get_cat_ids`` returns;
    pycocotools returns ids in file order and skips unknown names, which
    mislabels a class list ordered differently from the file.

    Args:
        annotation_file (str | dict, optional): Path of the COCO JSON
            file, or a parsed (and checked) file. Defaults to None.
        source (str, optional): What to call a parsed file in messages.
            Defaults to None: the path, or 'the ground truth'.

    Raises:
        CocoFormatError: if the file fails the COCO checks.
    """

    def __init__(self,
                 annotation_file: Union[str, dict, None] = None,
                 source: Optional[str] = None) -> None:
        super().__init__(None)
        if isinstance(annotation_file, str):
            self.annotation_file = source or annotation_file
            self.dataset = load_coco_json(annotation_file)
        elif annotation_file is not None:
            self.annotation_file = source or 'the ground truth'
            self.dataset = check_coco_annotations(annotation_file,
                                                  self.annotation_file)
        else:
            self.annotation_file = source
            return
        self.createIndex()
        # mmdet's wrapper names these two indexes otherwise
        self.img_ann_map = self.imgToAnns
        self.cat_img_map = self.catToImgs

    def loadRes(self, resFile) -> COCO:  # noqa: N802 (pycocotools' name)
        """pycocotools' ``loadRes``, which also takes an empty list: a
        model that detects nothing is scored 0, not skipped.

        Args:
            resFile (str | list | np.ndarray): Detections as pycocotools'
                ``loadRes`` takes them.

        Returns:
            COCO: The detections over this file's images and categories.
        """
        if isinstance(resFile, list) and not resFile:
            empty = COCO()
            empty.dataset = dict(
                images=list(self.dataset['images']),
                categories=list(self.dataset['categories']),
                annotations=[])
            empty.createIndex()
            return empty
        return super().loadRes(resFile)

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
    (``ignore_flag=1``). The file goes through the package's COCO checks
    (:mod:`~sapool_mmdet.datasets.coco_checks`) when the dataset loads.

    In training, images without a non-crowd object of the configured
    classes are dropped unless ``filter_cfg`` sets ``filter_empty_gt=False``:
    then they are kept as mmdet's ``CocoDataset`` keeps them, background
    images that teach a detector what is not an object. In ``test_mode``
    every image is kept, since detections on them are false positives that
    the metric must see.

    It takes the arguments of mmdet's ``CocoDataset``; other classes are set
    with ``metainfo=dict(classes=(...))``.

    Raises:
        ValueError: when loading, if a configured class is not a category of
            the annotation file (the message lists the file's categories),
            or (as :class:`CocoFormatError`) if the file fails the COCO
            checks.
    """

    METAINFO = dict(classes=DRIVING_CLASSES)
    COCOAPI = NamedCategoryCOCO

    def load_data_list(self) -> List[dict]:
        """mmdet's ``load_data_list``, then, if the pipeline reads image
        files from the local disk, check that every image is a file.

        Returns:
            list[dict]: The data infos.

        Raises:
            FileNotFoundError: if images are missing (the message names
                the first few and the folder).
        """
        data_list = super().load_data_list()
        reads_local_files = any(
            type(transform).__name__ == 'LoadImageFromFile'
            and getattr(transform, 'backend_args', None) is None
            for transform in self.pipeline.transforms)
        if reads_local_files and self.backend_args is None:
            check_image_files([info['img_path'] for info in data_list],
                              self.ann_file)
        return data_list

    def filter_data(self) -> List[dict]:
        """Apply ``filter_cfg`` as mmdet does, then, in training and unless
        ``filter_empty_gt=False``, drop images without a non-crowd instance
        of the configured classes.

        Returns:
            list[dict]: The kept data infos.
        """
        data_list = super().filter_data()
        filter_empty_gt = (self.filter_cfg or {}).get('filter_empty_gt', True)
        if self.test_mode or not filter_empty_gt:
            return data_list
        return [
            data_info for data_info in data_list if any(
                not instance['ignore_flag']
                for instance in data_info['instances'])
        ]
