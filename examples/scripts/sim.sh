#!/bin/sh
# Example simulation: one output per input file.
set -eu
for f in ${PRODOPS_INPUT_FILES:-}; do
  cp "$f" "${PRODOPS_OUTPUT_DIR:-.}/sim_$(basename "$f")"
done
