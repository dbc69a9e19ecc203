#!/bin/sh
# Example generator: writes one output file with the job's events.
# prodops gives the job its seed and event count in PRODOPS_SEED and PRODOPS_EVENTS.
# `--pace S` (the demo passes it) makes each of its steps a job stage of S seconds.
set -eu
pace=0
if [ "${1:-}" = "--pace" ]; then pace="${2:-0}"; fi
step() { if [ "$pace" != 0 ]; then echo "PRODOPS_STAGE $1"; sleep "$pace"; fi; }
step generate
out="${PRODOPS_OUTPUT_DIR:-.}/gen_${PRODOPS_SEED:-0}.root"
echo "events=${PRODOPS_EVENTS:-0} seed=${PRODOPS_SEED:-0}" > "$out"
step write
echo "PRODOPS_EVENTS ${PRODOPS_EVENTS:-0}"
