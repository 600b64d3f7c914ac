"""Deployment: ONNX export of a config's detector or backbone, evaluation of
the exported model with onnxruntime in mmdet's test loop, and static int8
quantisation.

Not imported by ``import sapool_mmdet``. ``onnx`` and ``onnxruntime`` (the
``deploy`` extra: ``pip install sapool_mmdet[deploy]``) are imported when a
function needs them; without them that function raises an ImportError
naming the extra.
"""
from .export import (DEFAULT_OPSET, OPSET_RANGE, PARITY_TOLERANCE,
                     ExportResult, UnexportableLayer, check_exportable,
                     export_module, export_onnx, exportable_pooling_methods,
                     find_unexportable, group_outputs)
from .quantize import load_calibration_inputs, quantize_int8
from .requirements import DEPLOY_EXTRA, import_onnx, import_onnxruntime
from .runtime import (ONNXRuntimeDetector, create_session, evaluate_onnx,
                      onnx_test_config, session_metadata)

__all__ = [
    'DEFAULT_OPSET', 'OPSET_RANGE', 'PARITY_TOLERANCE', 'DEPLOY_EXTRA',
    'ExportResult', 'UnexportableLayer', 'check_exportable',
    'export_module', 'export_onnx', 'exportable_pooling_methods',
    'find_unexportable', 'group_outputs', 'load_calibration_inputs',
    'quantize_int8', 'import_onnx', 'import_onnxruntime',
    'ONNXRuntimeDetector', 'create_session', 'evaluate_onnx',
    'onnx_test_config', 'session_metadata'
]
