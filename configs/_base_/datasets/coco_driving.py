# COCO 2017 restricted to the eight driving classes of Chen et al. (WACV
# 2023, Sec. 6.1), under data/coco/ (train2017/, val2017/ and
# annotations/instances_{train,val}2017.json).
#
# mmdet's detector configs differ in how they wrap the dataset (SSD repeats
# it, YOLOv3 does not), so this file holds partial dicts that each detector
# base merges into its dataloaders, keeping the detector's own pipeline:
#   train_dataloader = dict(dataset={{_base_.driving_train_dataset}})
custom_imports = dict(imports=['sapool_mmdet'], allow_failed_imports=False)

driving_classes = ('person', 'bicycle', 'car', 'motorcycle', 'bus', 'train',
                   'truck', 'traffic light')
driving_data_root = 'data/coco/'

driving_train_dataset = dict(
    type='CocoDrivingDataset',
    data_root=driving_data_root,
    metainfo=dict(classes=driving_classes),
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'))
driving_val_dataset = dict(
    type='CocoDrivingDataset',
    data_root=driving_data_root,
    metainfo=dict(classes=driving_classes),
    ann_file='annotations/instances_val2017.json',
    data_prefix=dict(img='val2017/'),
    test_mode=True)
driving_evaluator = dict(
    type='DrivingCocoMetric',
    ann_file=driving_data_root + 'annotations/instances_val2017.json',
    metric='bbox',
    classwise=True)
