#!/usr/bin/env bash
# The GPU check of issue 26 as one command: scripts/gpu_check.sh [--dry-run] [--out FILE]
# On a lent GPU machine (bare: PyTorch and Lightning, no Hydra): first `scripts/gpu_bundle.sh` here,
# then run this there with `.gpu` carried; it installs the bundle's wheels and unpacks its data.
# Here (a .venv, ../shared/data): `scripts/gpu_check.sh --dry-run` checks it end to end on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
if [ ! -x .venv/bin/python ] && [ -d .gpu/whl ]; then  # the bare GPU machine
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu-site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/gpu-site:$PWD/src
fi
if [ ! -d "$data" ] && [ -d .gpu/data ]; then  # MNIST travels gzipped (the 64 MiB limit); ablate reads it unpacked
  data=/tmp/gpu-data
  mkdir -p $data/MNIST/raw
  cp .gpu/data/cifar10-jpg.tar.gz $data/
  for f in .gpu/data/MNIST/*.gz; do gunzip -c "$f" > $data/MNIST/raw/$(basename "$f" .gz); done
fi
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
export NO_ALBUMENTATIONS_UPDATE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec $py scripts/gpu_check.py --data-root "$data" "$@"
