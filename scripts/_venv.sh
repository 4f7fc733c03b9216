# shellcheck shell=bash
# Sourced by scripts/serve and scripts/test: make or reuse .venv and install
# the project into it. $1 is the pip extra to install ("" for none).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.installed-${1:-base}"
# Reinstall only when the package metadata changed since the last install.
if [ ! -f "$stamp" ] || [ "$root/setup.cfg" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e "$root${1:+[$1]}"
    touch "$stamp"
fi
