"""A third party's own mmdet config reaches our modules through
``custom_imports`` alone (a fresh interpreter that never imported
sapool_mmdet itself)."""
import subprocess
import sys
import textwrap


def test_custom_imports_in_a_third_party_config(tmp_path):
    config = tmp_path / 'my_ssd.py'
    config.write_text(textwrap.dedent("""
        _base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
        custom_imports = dict(imports=['sapool_mmdet'],
                              allow_failed_imports=False)
        model = dict(backbone=dict(
            type='NLPoolMobileNetV2', widen_factor=1.0,
            pooling=dict(type='NLPool', patch_size=4),
            pool_position='inner'))
        """))
    script = textwrap.dedent(f"""
        import sys
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        assert 'sapool_mmdet' not in sys.modules
        cfg = Config.fromfile({str(config)!r})
        from mmdet.registry import MODELS
        init_default_scope('mmdet')
        model = MODELS.build(cfg.model).eval()
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
        print(type(model.backbone).__name__, type(model.backbone.layer2.pool)
              .__name__, [tuple(f.shape[-2:]) for f in feats][:2])
        """)
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'NLPoolMobileNetV2 NLPool [(4, 4), (2, 2)]' in proc.stdout
