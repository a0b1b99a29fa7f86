#!/usr/bin/env bash
# Builds wizgy for the oldest and newest supported CPython (3.9, 3.13) and runs the suite that
# needs no framework on each: the floor and ceiling of the support claim in the README.
# Interpreters come from pyenv; a missing one is reported and skipped, never silently passed.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for version in 3.9 3.13; do
    python=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$python" ]; then
        echo "test-versions: SKIPPED CPython $version: not installed under pyenv"
        continue
    fi
    venv=".venv-$version"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "maturin>=1.7,<2" "pytest>=8" "pytest-timeout>=2.3" "cryptography>=42" "h2>=4.1" "prometheus-client>=0.20"
    VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet
    echo "test-versions: CPython $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
    "$venv/bin/python" -m pytest -q tests \
        --ignore=tests/test_frameworks.py --ignore=tests/test_examples.py \
        --deselect tests/test_http2.py::test_frameworks_serve_json_forms_and_errors_over_h2c \
        || status=1
done
exit $status
