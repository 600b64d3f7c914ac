# Faster R-CNN with FPN at 1333x800 (mmdet's 1x recipe) on the eight COCO
# driving classes, with NLPoolResNet-50 as the backbone. With pooling=None,
# as here, the backbone is mmdet's ResNet-50. As mmdet's recipe, it starts
# from torchvision's ImageNet ResNet-50 with the stem and stage 1 frozen
# (frozen_stages=1) and BN statistics fixed (norm_eval=True). The stock
# checkpoint loads into every pooled variant: only the pooling layers are
# new, and they always train (see NLPoolResNet's freeze_pooling).
# From scratch instead:
#   --cfg-options model.backbone.init_cfg=None model.backbone.frozen_stages=-1 model.backbone.norm_eval=False
_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../datasets/coco_driving.py',
]

model = dict(
    backbone=dict(type='NLPoolResNet'),
    roi_head=dict(bbox_head=dict(num_classes=8)))

train_dataloader = dict(dataset={{_base_.driving_train_dataset}})
val_dataloader = dict(dataset={{_base_.driving_val_dataset}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.driving_evaluator}}
test_evaluator = val_evaluator
