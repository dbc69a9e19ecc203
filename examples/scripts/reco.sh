#!/bin/sh
# Example reconstruction: one output per input file.
set -eu
for f in ${PRODOPS_INPUT_FILES:-}; do
  cp "$f" "${PRODOPS_OUTPUT_DIR:-.}/reco_$(basename "$f")"
done
