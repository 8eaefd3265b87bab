#!/usr/bin/env bash
# Create a virtualenv and install ablate with its dev tools, pinned by requirements.lock.
# EXTRAS=mlflow,wandb adds optional extras (the loggers logger=mlflow, logger=wandb).
# uv when it can be had (~30 s cold), pip otherwise (~90 s). torch and torchvision come from the
# registry together (a local CPU-only torch wheel does not work with the registry's torchvision).
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
constraints=()
[ -f requirements.lock ] && constraints=(-c requirements.lock)
extras=dev${EXTRAS:+,$EXTRAS}
export UV_COMPILE_BYTECODE=1   # PYTHONDONTWRITEBYTECODE=1 here would leave no .pyc: imports 2x slower
unset PIP_FIND_LINKS           # never pick the CPU torch wheel lying on disk
if "$venv/bin/python" -m pip install -q uv 2>/dev/null && [ -x "$venv/bin/uv" ]; then
  "$venv/bin/uv" pip install --python "$venv/bin/python" "${constraints[@]}" -e ".[$extras]"
else
  "$venv/bin/python" -m pip install -q "${constraints[@]}" -e ".[$extras]"
  "$venv/bin/python" -m compileall -q "$venv/lib" >/dev/null || true
fi
"$venv/bin/python" -c "import torch, torchvision, lightning, hydra, albumentations; print('ablate env ok: torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', lightning.__version__)"
