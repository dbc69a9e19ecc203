#!/bin/sh
# Example validation: fails if any input file is empty.
set -eu
for f in ${PRODOPS_INPUT_FILES:-}; do
  test -s "$f"
done
