#!/usr/bin/env bash
# The benchmark suite with its peers: builds prodops (release), installs
# Snakemake and Luigi into a throwaway Python venv (removed afterwards), and
# runs `prodops bench` with them, and with PostgreSQL when PRODOPS_TEST_PG
# names a server. Peers that cannot be installed are skipped with a note.
# Arguments go to `prodops bench` (scenarios, --rounds N, --json, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked >&2

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
venv="$scratch/peers"
peers=()
if python3 -m venv "$venv" >&2 &&
  "$venv/bin/pip" install --quiet --disable-pip-version-check snakemake luigi >&2; then
  peers=(--peers "$venv")
else
  echo "bench: Snakemake and Luigi could not be installed; they are skipped" >&2
fi

pg=()
if [ -n "${PRODOPS_TEST_PG:-}" ]; then
  pg=(--pg "$PRODOPS_TEST_PG")
fi

./target/release/prodops bench "${peers[@]}" "${pg[@]}" "$@"
