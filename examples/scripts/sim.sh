#!/bin/sh
# Example simulation: one output per input file.
# `--pace S` (the demo passes it) makes each of its steps a job stage of S seconds.
set -eu
pace=0
if [ "${1:-}" = "--pace" ]; then pace="${2:-0}"; fi
step() { if [ "$pace" != 0 ]; then echo "PRODOPS_STAGE $1"; sleep "$pace"; fi; }
step simulate
for f in ${PRODOPS_INPUT_FILES:-}; do
  cp "$f" "${PRODOPS_OUTPUT_DIR:-.}/sim_$(basename "$f")"
done
step digitise
