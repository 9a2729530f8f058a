#!/usr/bin/env bash
# The comparison's remaining runs on a machine that is lent for minutes (a GPU), then its finished run folders packed
# to be brought back and committed where the project lives.
#
#   bash tools/sweeps_elsewhere.sh OUT_DIR [SECONDS] [JOBS] [PROFILE] [SWEEPS...]
#
# Runs `python -m tools.sweep --jobs JOBS --sweep SWEEPS` (default: 8 processes, tune then seeds_tuned, profile
# smollm2-aclsum) for at most SECONDS (default 420); a run cut there is left (it never lands as finished), the
# summaries are written from what finished. OUT_DIR/runs.tgz then holds every finished run folder of those sweeps
# without the weights the repository does not keep (full-rank and LoRA weights; soft prompts are small and kept),
# OUT_DIR/pool.log the pool's own lines and OUT_DIR/logs.tgz each run's output. Unpack runs.tgz in the project's root:
# the folders land where they belong; a run that is there already is the same unit (same settings hash), so copy only
# the new ones.
set -uo pipefail
out=${1:?usage: bash tools/sweeps_elsewhere.sh OUT_DIR [SECONDS] [JOBS] [PROFILE] [SWEEPS...]}
seconds=${2:-420}
jobs=${3:-8}
profile=${4:-smollm2-aclsum}
shift $(( $# < 4 ? $# : 4 ))
sweeps=${*:-tune seeds_tuned}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
timeout -s TERM -k 60 "$seconds" "$python" -m tools.sweep --profile "$profile" --sweep $sweeps --jobs "$jobs" \
    --checkpoints checkpoints 2>&1 | tee "$out/pool.log"
echo "pool exit ${PIPESTATUS[0]}" | tee -a "$out/pool.log"
"$python" -m tools.sweep --profile "$profile" --sweep $sweeps --summarize 2>&1 | tee -a "$out/pool.log"
folders=()
for sweep in $sweeps; do folders+=("results/$profile/sweeps/$sweep"); done
# finished units only (write_unit lands a unit whole: a folder without complete.json is a run cut short), without
# the weights the repository does not keep (every adapter but a soft prompt's), with each sweep's summary files
find "${folders[@]}" -mindepth 1 -maxdepth 1 -type d ! -name ".*" -exec test -f {}/complete.json \; -print | sort > "$out/finished.txt"
{ while read -r run; do
      if grep -q '"method": "prompt_tuning"' "$run/metrics.json"; then find "$run" -type f ! -path '*/.*'
      else find "$run" -type f ! -path '*/.*' | grep -v -E '/adapter/.*\.safetensors$' || true; fi
  done < "$out/finished.txt"
  find "${folders[@]}" -maxdepth 1 -type f -name '*.json'
} | sort -u > "$out/files.txt"
tar czf "$out/runs.tgz" -T "$out/files.txt"
tar czf "$out/logs.tgz" -C checkpoints pool 2>/dev/null || true
echo "packed $(wc -l < "$out/finished.txt") finished runs into $out/runs.tgz ($(du -h "$out/runs.tgz" | cut -f1))"
