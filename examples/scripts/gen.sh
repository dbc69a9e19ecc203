#!/bin/sh
# Example generator: writes one output file with the job's events.
# prodops gives the job its seed and event count in PRODOPS_SEED and PRODOPS_EVENTS.
set -eu
out="${PRODOPS_OUTPUT_DIR:-.}/gen_${PRODOPS_SEED:-0}.root"
echo "events=${PRODOPS_EVENTS:-0} seed=${PRODOPS_SEED:-0}" > "$out"
echo "PRODOPS_EVENTS ${PRODOPS_EVENTS:-0}"
