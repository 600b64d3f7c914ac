"""Deployment: ONNX export of a config's detector or backbone, evaluation of
the exported model with onnxruntime in mmdet's test loop, and static int8
quantisation.

Not imported by ``import sapool_mmdet``. ``onnx`` and ``onnxruntime`` (the
``deploy`` extra: ``pip install -e '.[deploy]'`` in the source tree) are imported when a
function needs them; without them that function raises an ImportError
naming the extra.
"""
from .export import (DEFAULT_OPSET, OPSET_RANGE, PARITY_TOLERANCE,
                     ExportResult, UnexportableLayer, check_exportable,
                     export_module, export_onnx, exportable_pooling_methods,
                     find_unexportable, group_outputs)
from .graph import INPUT_NAME, create_session, session_metadata
from .quantize import load_calibration_inputs, quantize_int8
from .requirements import DEPLOY_EXTRA, import_onnx, import_onnxruntime
from .runtime import ONNXRuntimeDetector, evaluate_onnx, onnx_test_config

__all__ = [
    'DEFAULT_OPSET', 'INPUT_NAME', 'OPSET_RANGE', 'PARITY_TOLERANCE',
    'DEPLOY_EXTRA',
    'ExportResult', 'UnexportableLayer', 'check_exportable',
    'export_module', 'export_onnx', 'exportable_pooling_methods',
    'find_unexportable', 'group_outputs', 'load_calibration_inputs',
    'quantize_int8', 'import_onnx', 'import_onnxruntime',
    'ONNXRuntimeDetector', 'create_session', 'evaluate_onnx',
    'onnx_test_config', 'session_metadata'
]
