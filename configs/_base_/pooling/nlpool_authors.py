# The `nlp` pooling of the authors' code (C-Fun/Self-Attentive-Pooling-for-
# Efficient-Deep-Learning, base/models/network.py), shared by the runs in
# configs/official/: embedding ratio 1, their embedding width rule
# (round(eps_r * C / m) * m: embed_width='per_head'), their learned
# row/column positional encoding, nearest upsampling, eq. 5 with its
# denominator. Each run adds its string's suffixes: `_headfix2`
# (num_heads=2), `_nowin` (window_norm=False), `_reduced` (patch sizes), and
# the heads per stage; see docs/configs.md, "The authors' architecture
# strings".
nlp_authors = dict(type='NLPool', embed_ratio=1.0, window_norm=True,
                   upsample='nearest', pos_embed='rowcol',
                   embed_width='per_head')
