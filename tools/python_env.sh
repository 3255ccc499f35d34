#!/usr/bin/env bash
# A virtual environment with pinned packages from PyPI, never the system Python's:
#   tools/python_env.sh VENV WHEELS REQUIREMENTS...
# Wheels are downloaded once into WHEELS (default ~/.cache/quantlab/wheels; pip's own cache is not
# relied on) and installed from there, so a re-run, a fresh clone or a second build folder reuses
# them without the network. PYTHON (default python3) creates the environment.
set -euo pipefail
venv=$1
wheels=$2
shift 2
py=${PYTHON:-python3}
index=${PIP_INDEX_URL:-https://pypi.org/simple}

if [ ! -x "$venv/bin/python" ]; then
  if ! "$py" -m venv "$venv" 2>/tmp/quantlab-venv.$$; then
    # Debian's python3 makes environments only with its python3-venv package.
    if [ "$(command -v "$py")" = /usr/bin/python3 ] && command -v apt-get > /dev/null; then
      sudo=$([ "$(id -u)" = 0 ] || echo sudo)
      echo "python_env: installing Debian's python3-venv"
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
      rm -rf "$venv"
      "$py" -m venv "$venv"
    else
      cat /tmp/quantlab-venv.$$ >&2
      echo "python_env: $py cannot make a virtual environment in $venv (see above); set PYTHON= to a python3 with venv" >&2
      exit 1
    fi
  fi
  rm -f /tmp/quantlab-venv.$$
fi

mkdir -p "$wheels"
reqs=()
for r in "$@"; do reqs+=(-r "$r"); done
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
# From the wheels already here, without the network; on a miss, download what is missing first.
if ! "${pip[@]}" install -q --no-index --find-links="$wheels" "${reqs[@]}" 2>/dev/null; then
  echo "python_env: downloading $* from $index into $wheels (once; later builds reuse it)"
  if ! "${pip[@]}" download -q -d "$wheels" "${reqs[@]}"; then
    echo "python_env: pip could not download the packages of $* from $index: the lines above name the package." >&2
    echo "  Check the network, PIP_INDEX_URL, and that PyPI serves that version for $("$venv/bin/python" -V 2>&1) on $(uname -m)." >&2
    exit 1
  fi
  if ! "${pip[@]}" install -q --no-index --find-links="$wheels" "${reqs[@]}"; then
    echo "python_env: pip could not install $* from $wheels into $venv: the lines above name the package" >&2
    exit 1
  fi
fi
echo "python_env: $venv has $(cat "$@" | grep -v '^#' | grep . | tr '\n' ' ')"
