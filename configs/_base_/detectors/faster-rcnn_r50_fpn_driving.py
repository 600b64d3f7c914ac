# Faster R-CNN with FPN at 1333x800 (mmdet's 1x recipe) on the eight COCO
# driving classes, with NLPoolResNet-50 as the backbone. With pooling=None,
# as here, the backbone is mmdet's ResNet-50. Trained from scratch: BN
# statistics are learned (norm_eval=False) and nothing is frozen. With
# ImageNet weights, set
# init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
# frozen_stages=1 and norm_eval=True as mmdet does: the stock checkpoint
# loads into every pooled variant (only the pooling modules are new).
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../datasets/coco_driving.py',
]

model = dict(
    backbone=dict(
        type='NLPoolResNet', frozen_stages=-1, norm_eval=False,
        init_cfg=None),
    roi_head=dict(bbox_head=dict(num_classes=8)))

train_dataloader = dict(dataset={{_base_.driving_train_dataset}})
val_dataloader = dict(dataset={{_base_.driving_val_dataset}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.driving_evaluator}}
test_evaluator = val_evaluator
