# The demo: configs/ssd_mbv2_nlp.py (SSDlite-MobileNetV2 320x320 with
# NLPool) on the synthetic driving set of tools/make_synthetic_coco.py,
# with a schedule sized for a 2-core CPU (`make demo`).
#
# mmdet's SSDlite recipe (Expand up to 4x, MinIoURandomCrop, photometric
# distortion, 120 epochs of a 5x repeated set) is built for COCO on GPUs;
# on 400 synthetic images it learns far too slowly for a demo. This file
# keeps the model and swaps in a light recipe: resize + flip, SGD lr 0.05
# with warm-up and cosine decay, batch 16, 8 epochs. The pooling sits at
# the stage input ('pre'): the stock resolution schedule, so the first
# blocks do not run at full resolution on a CPU.
_base_ = '../ssd_mbv2_nlp.py'

model = dict(backbone=dict(pool_position='pre'))

data_root = 'data/synthetic_driving/'
input_size = 320
max_epochs = 8

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        _delete_=True,
        type='CocoDrivingDataset',
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs,
         end=max_epochs, by_epoch=True, eta_min=0),
]
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(enable=False)
# One seed for the weights, the data order and the flips, so that two
# `make demo` runs train the same network (mmengine draws a new seed per
# run otherwise, and the demo's mAP then moves by several points).
randomness = dict(seed=0)
