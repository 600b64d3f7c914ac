#!/usr/bin/env bash
# Train on NUM_PROCS processes per machine with torchrun (mmdet's form):
#   bash tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py arguments]
# One process per GPU (nccl); without CUDA, NUM_PROCS CPU processes (gloo).
# Environment: NNODES (machines, default 1), NODE_RANK (this machine's index,
# 0..NNODES-1, default 0), MASTER_ADDR (address of machine 0, default
# 127.0.0.1), PORT (rendezvous port on machine 0, default 29500), PYTHON
# (interpreter, default python).
CONFIG=$1
NUM_PROCS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

if [ $# -lt 2 ]; then
    echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500]" \
        "bash $0 CONFIG NUM_PROCS [tools/train.py arguments]" >&2
    exit 2
fi
# torchrun on machine 0 opens MASTER_ADDR:PORT; if something listens there
# already, say so instead of failing deep inside torchrun with EADDRINUSE.
if [ "$NODE_RANK" = "0" ] && (exec 3<>"/dev/tcp/$MASTER_ADDR/$PORT") 2>/dev/null; then
    echo "error: port $PORT on $MASTER_ADDR is already in use (another" \
        "distributed job?); choose a free one, e.g. PORT=$((PORT + 1)) bash $0 ..." >&2
    exit 1
fi

. "$(dirname "$0")/require_torch.sh"
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$NUM_PROCS \
    --master_port=$PORT \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
