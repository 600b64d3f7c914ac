# The authors' SSDlite-MobileNetV2 baseline, `mobilenet-skip-1222121`
# (their mmdet_repo/configs/network/ssd/mobilenet/skip-1222121.py on
# network/ssd/_base_.py): stock strided convs, s1 = 1, trained from scratch
# (their MobileNetV2 loads no ImageNet weights), 320x320, with their SSD
# schedule, which the other official SSD configs share:
# - 20 epochs over the driving subset (no RepeatDataset), 16 images per GPU;
# - SGD, lr 0.015, momentum 0.9, weight decay 4e-5, no gradient clipping;
# - linear warm-up over 500 iterations from 0.001 x lr, then cosine
#   annealing to 0 over the 20 epochs;
# - evaluation and checkpoints every 5 epochs.
# The lr is theirs and is not scaled with the number of GPUs.
_base_ = '../_base_/detectors/ssdlite_mbv2_driving.py'

max_epochs = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
train_dataloader = dict(batch_size=16, dataset=dict(times=1))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.015, momentum=0.9, weight_decay=4.0e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs,
         end=max_epochs, by_epoch=True, eta_min=0)
]
default_hooks = dict(checkpoint=dict(interval=5))
