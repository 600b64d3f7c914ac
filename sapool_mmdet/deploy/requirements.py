"""Import the optional deployment packages with an error that says how to
install them."""
from types import ModuleType

__all__ = ['DEPLOY_EXTRA', 'import_onnx', 'import_onnxruntime']

# The package is installed from its source tree, not from a package index.
DEPLOY_EXTRA = ("pip install -e '.[deploy]' in the sapool-mmdet folder "
                "(or: pip install 'onnx>=1.17' 'onnxruntime>=1.19')")


def _missing(package: str, error: ImportError) -> ImportError:
    return ImportError(
        f'ONNX deployment needs the {package!r} package, which cannot be '
        f'imported ({error}); install the deploy extra: {DEPLOY_EXTRA} '
        f'(make install installs it)')


def import_onnx() -> ModuleType:
    """Return the ``onnx`` module, or raise an ImportError naming the
    ``deploy`` extra."""
    try:
        import onnx
    except ImportError as error:
        raise _missing('onnx', error) from error
    return onnx


def import_onnxruntime() -> ModuleType:
    """Return the ``onnxruntime`` module, or raise an ImportError naming
    the ``deploy`` extra."""
    try:
        import onnxruntime
    except ImportError as error:
        raise _missing('onnxruntime', error) from error
    return onnxruntime
