# The authors' Faster R-CNN-ResNet18-FPN baseline, `resnet18-skip-1222`
# (their mmdet_repo/configs/network/faster_rcnn/resnet18/resnet18.py on
# faster_rcnn/_base_.py and common/schedule.py): stock strided convs,
# s1 = 1, 1333x800, with their Faster R-CNN schedule, which the other
# official Faster R-CNN configs share:
# - 12 epochs, 2 images per GPU;
# - SGD, lr 0.02, momentum 0.9, weight decay 1e-4, gradient norm clipped
#   at 20 (L2);
# - linear warm-up over 500 iterations from 0.001 x lr, lr x 0.1 after
#   epochs 8 and 11 (mmdet's 1x schedule, which ours inherits, plus the
#   clipping).
# Their ResNet18 starts from ImageNet weights; see the ResNet18 detector
# base for how ours starts.
_base_ = '../_base_/detectors/faster-rcnn_r18_fpn_driving.py'

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=20, norm_type=2))
