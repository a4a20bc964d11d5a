#!/usr/bin/env bash
# Set up (venv, packages, beanstalkd), check lint, format and types, and run the whole test suite with pytest.
# --fast: the tests that start no grid and take no minutes (-m "not slow and not chaos"), for every edit;
# the whole suite before a merge. Extra arguments go to pytest, as in: scripts/test.sh -k pipeline -x
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
marks=()
if [ "${1:-}" = --fast ]; then
    shift
    marks=(-m "not slow and not chaos")
fi
bash scripts/setup.sh --dev
if [ ! -f ../shared/faces/labels.csv ] && [ -z "${FACEGRID_FACES:-}" ]; then
    if [ "${CI:-}" = true ]; then
        echo "test.sh: ../shared/faces is absent: under CI=true the tests that need it fail" >&2
    else
        echo "test.sh: ../shared/faces is absent: tests that need the labelled photos will skip" >&2
    fi
fi
# Lint, format and types first (configured in pyproject.toml): any finding fails the run.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy  # facegrid, benchmarks and tests (pyproject.toml)
exec .venv/bin/python -m pytest "${marks[@]}" "$@"
