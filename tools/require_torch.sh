# Sourced by tools/dist_*.sh and tools/slurm_*.sh after they set PYTHON.
# Without torch the launcher would stop with a bare "No module named torch";
# the usual cause is an interpreter outside the project's environment.
# (find_spec looks torch up without importing it: no startup cost.)
if ! "$PYTHON" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)' >/dev/null 2>&1; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "error: no Python interpreter '$PYTHON' found." >&2
    else
        echo "error: '$PYTHON' ($(command -v "$PYTHON")) cannot import torch." >&2
    fi
    echo "Activate the environment that has torch, mmdet and sapool_mmdet" \
        "(source .venv/bin/activate after make install), or name its" \
        "interpreter: PYTHON=.venv/bin/python bash $0 ..." >&2
    exit 1
fi
