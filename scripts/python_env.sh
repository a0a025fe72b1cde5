# Sourced by setup.sh, demo.sh and test.sh: picks the Python to install into and run with, as $py.
#
# - Inside a virtual environment (venv, virtualenv, conda): its python.
# - Otherwise: creates .venv/ in the checkout (once) and uses it, so the scripts never install into the
#   system Python by accident.
# - SLIMNN_SYSTEM_PYTHON=1, or CI=true (how CI runs scripts/test.sh, as root on a clean clone): the
#   interpreter as found ($PYTHON, default python3), system or not.
# $PYTHON names the interpreter to start from (default python3).
slimnn_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
if [ "${SLIMNN_PYTHON_CHOSEN:-}" = "$py" ]; then
  return 0  # a parent script (demo.sh, test.sh) chose it already
fi
if ! command -v "$py" >/dev/null 2>&1; then
  echo "slimnn: '$py' not found; install Python 3.9 or newer, or set PYTHON=/path/to/python3" >&2
  exit 2
fi
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
  echo "slimnn: $("$py" -V 2>&1) is too old; slimnn needs Python 3.9 or newer (set PYTHON=...)" >&2
  exit 2
fi
in_venv=$("$py" -c 'import os, sys; print(int(sys.prefix != sys.base_prefix or bool(os.environ.get("CONDA_PREFIX"))))')
if [ "$in_venv" = 1 ]; then
  :
elif [ "${SLIMNN_SYSTEM_PYTHON:-0}" = 1 ] || [ "${CI:-}" = true ]; then
  echo "slimnn: not in a virtual environment; installing into $(command -v "$py") as asked" \
       "(SLIMNN_SYSTEM_PYTHON=1 or CI=true)" >&2
else
  venv="$slimnn_root/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    echo "slimnn: not in a virtual environment, so creating one in $venv" >&2
    echo "        (to use another: python3 -m venv DIR && . DIR/bin/activate, then run this again;" >&2
    echo "         to install into this Python anyway: SLIMNN_SYSTEM_PYTHON=1)" >&2
    if ! "$py" -m venv "$venv"; then
      rm -rf "$venv"
      echo "slimnn: '$py -m venv' failed; on Debian / Ubuntu: apt-get install python3-venv" >&2
      exit 2
    fi
  else
    echo "slimnn: not in a virtual environment; using the one in $venv" >&2
  fi
  py="$venv/bin/python"
  echo "slimnn: to use slimnn from your shell afterwards: . $venv/bin/activate" >&2
fi
# The children (setup.sh from demo.sh / test.sh) pick the same interpreter without asking again.
export PYTHON="$py" SLIMNN_PYTHON_CHOSEN="$py"
