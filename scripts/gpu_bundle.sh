#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on a bare GPU machine into .gpu/ (git-ignored; carried with
# the device tool's `carry: [".gpu"]`): wheels for its Python 3.12 of what its image lacks (Hydra,
# albumentations, pydantic, the joblib launcher, airbench) and the datasets (MNIST gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/whl .gpu/data/MNIST
pip=".venv/bin/python -m pip"
$pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl hydra-core==1.3.8 omegaconf==2.3.1 albumentations==2.0.8 albucore==0.0.24 \
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing-extensions==4.16.0 simsimd==6.5.16 stringzilla==5.3.2 \
  hydra-joblib-launcher==1.2.0
# Published as source only: built here into pure-Python wheels.
$pip wheel -q --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3 airbench==0.1.8
cp ../shared/data/cifar10-jpg.tar.gz .gpu/data/
for f in ../shared/data/MNIST/raw/*-ubyte; do gzip -c "$f" > .gpu/data/MNIST/$(basename "$f").gz; done
du -sh .gpu
