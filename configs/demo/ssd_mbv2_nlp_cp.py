# The demo of 'Ours+CP' (Chen et al., WACV 2023, Sec. 4.2): the `make demo`
# detector (configs/demo/ssd_mbv2_nlp.py) fine-tuned on the synthetic
# driving set with 2x channel pruning of every activation map before the
# first pooling layer (the stem and stage 1; the demo pools at stage 2's
# input). After `make demo`:
#   python tools/train.py configs/demo/ssd_mbv2_nlp_cp.py \
#       --cfg-options load_from=work_dirs/demo/epoch_8.pth
#   python tools/compact_pruned.py configs/demo/ssd_mbv2_nlp_cp.py \
#       work_dirs/ssd_mbv2_nlp_cp/epoch_1.pth --out work_dirs/demo_cp
_base_ = './ssd_mbv2_nlp.py'

custom_imports = dict(
    imports=['sapool_mmdet', 'sapool_mmdet.engine'],
    allow_failed_imports=False)

# One epoch of 25 batches from a fifth of the demo's learning rate:
# pruning to 2x before the first iteration, prune-and-regrow at iterations
# 10 and 20 at a rate decaying from 0.3.
max_epochs = 1
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=10),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs,
         end=max_epochs, by_epoch=True, eta_min=0),
]
default_hooks = dict(
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='ChannelPruningHook', sparsity=0.5, interval=10,
         prune_rate=0.3),
]
