# Shared by scripts/start and scripts/test: make .venv and install Pairwise into it.
# torch comes first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
TORCH_SPEC="${PAIRWISE_TORCH:-torch==2.13.0}"

install_python_deps() {  # $1: "app" (the app alone) or an extra of pyproject.toml, e.g. "dev"
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $($PY --version)"
    "$PY" -m venv .venv
  fi
  local stamp=".venv/.pairwise-installed-$1" extra
  # "app" is in every extra: after scripts/test installed "dev", scripts/start has nothing to install.
  for extra in "$1" $([ "$1" = app ] && echo dev); do
    if [ -f ".venv/.pairwise-installed-$extra" ] && [ ".venv/.pairwise-installed-$extra" -nt pyproject.toml ]; then
      return
    fi
  done
  echo "==> installing Python packages (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  local target="."
  [ "$1" = app ] || target=".[$1]"
  .venv/bin/python -m pip install --quiet -e "$target" "$TORCH_SPEC"
  touch "$stamp"
}
