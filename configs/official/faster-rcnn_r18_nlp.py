# The authors' Faster R-CNN-ResNet18-FPN NLPool run, `resnet18-nlp-1222`
# (their mmdet_repo/configs/network/faster_rcnn/resnet18/resnet18_nlp.py, 1
# image per GPU), with the schedule of faster-rcnn_r18_conv.py. What the
# string sets (their base/models/network.py, name_parse, 4-stage branch):
# - `resnet18`: pooling after all blocks of a stage: pool_position='outer';
# - `-1222`: layer2, layer3 and layer4 pool;
# - `nlp`: NLPool with patch size 1, embed_ratio 1, their embedding width
#   rule, 8, 16 and 32 heads on layer2, layer3 and layer4 (4 would be
#   layer1's), eq. 5 with its denominator (window_norm=True), nearest
#   upsampling.
# One departure: patch size 1 makes every pixel of the 336x200 layer2 map
# (1333x800 padded to 1344x800) a token, and the authors' row/column
# positional encoding holds only 256 columns (their module would fail with
# an index error), so this config uses pos_embed='learned', a learned table
# resized to any grid. faster-rcnn_r18_nlp-reduced.py, their `nlp_reduced`
# run, keeps their encoding. Attention over 67200 tokens needs a GPU.
_base_ = [
    './faster-rcnn_r18_conv.py', '../_base_/pooling/nlpool_authors.py'
]

# patch size 1; the learned positional table (see above)
nlp = dict(_base_.nlp_authors, patch_size=1, pos_embed='learned')
model = dict(
    backbone=dict(
        pool_position='outer',
        pooling=[
            None,
            dict(nlp, num_heads=8),
            dict(nlp, num_heads=16),
            dict(nlp, num_heads=32),
        ]))
train_dataloader = dict(batch_size=1)
