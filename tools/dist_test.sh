#!/usr/bin/env bash
# Test a checkpoint on NUM_PROCS processes per machine with torchrun
# (mmdet's form):
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [tools/test.py arguments]
# Environment: NNODES, NODE_RANK, MASTER_ADDR, PORT, PYTHON as in
# tools/dist_train.sh.
CONFIG=$1
CHECKPOINT=$2
NUM_PROCS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

if [ $# -lt 3 ]; then
    echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500]" \
        "bash $0 CONFIG CHECKPOINT NUM_PROCS [tools/test.py arguments]" >&2
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
    "$(dirname "$0")/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
