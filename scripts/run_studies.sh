#!/usr/bin/env bash
# Run study presets one after another as sequential studies (python -m ablate.study: seeds added
# only where a claim is undecided, no new round after MAX_HOURS if set, else after the preset's
# declared study.max_hours, else after 0.2 h), time each, copy its report to docs/results/.
#   scripts/run_studies.sh [quick|full] [preset ...]     (default: quick, every preset)
#   ARGS="..." adds options and overrides to every study, e.g. on a GPU:
#   ARGS="hydra/launcher=joblib hydra.launcher.n_jobs=8" scripts/run_studies.sh full norm_compare
set -uo pipefail
scale=${1:-quick}; shift || true
presets=("$@")
# default: every study preset but the speedruns (make speedrun) and those marked "# Superseded by"
[ ${#presets[@]} -gt 0 ] || presets=($(grep -L '^# Superseded by' conf/experiment/*.yaml | xargs -n1 basename | grep -v -e _quick -e '^speedrun_' | sed 's/\.yaml$//'))
suffix=$([ "$scale" = quick ] && echo _quick || echo "")
py=${PY:-.venv/bin/python}
read -ra extra <<< "${ARGS:-}"
cap=(--default-max-hours 0.2); [ -z "${MAX_HOURS:-}" ] || cap=(--max-hours "$MAX_HOURS")
for p in "${presets[@]}"; do
  name=$p$suffix
  start=$(date +%s)
  # a sequential study: the preset's seeds, then seeds added only where a claim is undecided
  "$py" -m ablate.study "experiment=$name" "${cap[@]}" callbacks.progress_bar=null ${extra[@]+"${extra[@]}"} > "logs/$name.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  [ $rc -eq 0 ] || "$py" -m ablate.report "logs/experiments/$name" > /dev/null
  mkdir -p "docs/results/$name"
  cp -r "logs/experiments/$name/report/." "docs/results/$name/"
  echo "$name: exit $rc, $secs s wall ($(nproc) cores)" | tee -a docs/results/timings.txt
done
