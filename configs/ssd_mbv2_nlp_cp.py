# 'Ours+CP' (Chen et al., WACV 2023, Sec. 4.2, Tables 2-3): SSDlite-
# MobileNetV2 with NLPool (configs/ssd_mbv2_nlp.py, s1 = 1) fine-tuned
# jointly with 2x channel pruning of every activation map before the first
# pooling layer (the stem, stage 1 and the first block of stage 2, whose
# 96-channel 160x160 expansion is the network's activation peak).
#
# As the paper: pre-train with the pooling, then fine-tune with pruning.
# Start from the NLPool checkpoint:
#   python tools/train.py configs/ssd_mbv2_nlp_cp.py \
#       --cfg-options load_from=work_dirs/ssd_mbv2_nlp/epoch_120.pth
# then remove the pruned channels physically:
#   python tools/compact_pruned.py configs/ssd_mbv2_nlp_cp.py \
#       work_dirs/ssd_mbv2_nlp_cp/epoch_24.pth --out work_dirs/ssd_mbv2_nlp_cp
_base_ = './ssd_mbv2_nlp.py'

custom_imports = dict(
    imports=['sapool_mmdet', 'sapool_mmdet.engine'],
    allow_failed_imports=False)

# The fine-tuning schedule: a fifth of the pre-training's epochs (of the
# 5x repeated set), warm-up, cosine decay from a tenth of its learning rate.
max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=500),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_epochs,
         end=max_epochs, by_epoch=True, eta_min=0),
]
optim_wrapper = dict(optimizer=dict(lr=0.0015))

# mmdet's SSDlite hooks, plus channel pruning: 2x (sparsity 0.5), a
# prune-and-regrow step every 1000 iterations at a rate decaying from 0.3.
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='ChannelPruningHook', sparsity=0.5, interval=1000,
         prune_rate=0.3),
]
