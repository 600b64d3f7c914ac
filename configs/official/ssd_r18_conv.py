# The authors' SSDlite-ResNet18 baseline, `resnet18-skip-1222` (their
# mmdet_repo/configs/network/ssd/resnet18/ssd_resnet18-skip-1222.py):
# stock strided convs, s1 = 1, layer3 and layer4 to the SSD neck, 320x320,
# with the SSD schedule of ssd_mbv2_conv.py (they set 20 epochs in this file
# too). Their ResNet18 starts from ImageNet weights; see the ResNet18
# detector base for how ours starts.
_base_ = '../_base_/detectors/ssdlite_r18_driving.py'

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
