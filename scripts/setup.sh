#!/usr/bin/env bash
# Install everything facegrid needs on a fresh Debian machine, idempotently:
#   - beanstalkd from Debian (apt-get), if missing
#   - a virtual environment in .venv with the Python packages
#   - the fast face encoder: dlib built once per machine with OpenBLAS and AVX2/FMA
#     (scripts/build-dlib.sh: about 10 minutes on 2 cores the first time, cached, so
#     a second setup takes seconds; a progress line every 30 s while it builds). Where
#     it cannot be built, the prebuilt dlib-bin wheel is used instead: the same
#     encodings, about 5x slower to make.
# face_recognition is installed with --no-deps after its real dependencies, so pip
# never compiles dlib on its own.
# Usage: scripts/setup.sh [--dev] [--quick]
#   --dev     adds the test tools
#   --quick   never waits for a build: the cached fast encoder if there is one, else
#             dlib-bin (scripts/demo.sh uses this)
# FACEGRID_DLIB=bin scripts/setup.sh   keeps the dlib-bin wheel and builds nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

dev=0 quick=0
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        --quick) quick=1 ;;
        *) echo "setup.sh: unknown option $arg; use --dev and/or --quick" >&2; exit 2 ;;
    esac
done

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

apt_install() {
    echo "setup: installing Debian packages: $*" >&2
    "${sudo_cmd[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@" >&2
}

command -v beanstalkd >/dev/null 2>&1 || apt_install beanstalkd
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv

py="${FACEGRID_PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

# pyproject.toml is the one list of versions; scripts/deps.py prints its lists.
deps() { .venv/bin/python scripts/deps.py "$1"; }
want="$(sha256sum < pyproject.toml | cut -c1-16)"
[ "$dev" = 1 ] && want="$want-dev"
stamp=.venv/.facegrid-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python packages into .venv (first run takes a minute)" >&2
    "${pip[@]}" install -U pip wheel >&2
    mapfile -t runtime < <(deps runtime)
    mapfile -t nodeps < <(deps no-deps)
    "${pip[@]}" install "${runtime[@]}" >&2
    "${pip[@]}" install --no-deps "${nodeps[@]}" >&2
    if [ "$dev" = 1 ]; then mapfile -t devtools < <(deps dev); "${pip[@]}" install "${devtools[@]}" >&2; fi
    # The checkout's own package, editable: scripts/*.py and python -m facegrid.status find it from anywhere.
    "${pip[@]}" install --no-deps --no-build-isolation -e . >&2
    .venv/bin/python -c 'import face_recognition_models, cv2, greenstalk, sqlite_utils, PIL, numpy, tqdm' >&2
    echo "$want" > "$stamp"
fi

# dlib: the fast build where this machine can have it, else the dlib-bin wheel.
installed() { .venv/bin/python -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' "$1" 2>/dev/null; }
use_bin() {
    installed dlib && "${pip[@]}" uninstall -y dlib >&2
    if ! installed dlib-bin; then
        echo "setup: installing the prebuilt dlib-bin wheel (encodings about 5x slower than the fast build)" >&2
        "${pip[@]}" install "$(deps dlib-bin)" >&2
    fi
    rm -f .venv/.facegrid-dlib
}
wheel=""
if [ "${FACEGRID_DLIB:-fast}" = bin ]; then
    :
elif [ "$quick" = 1 ]; then
    wheel="$(bash scripts/build-dlib.sh --cached-only)" || true
else
    wheel="$(bash scripts/build-dlib.sh)" || echo "setup: using the dlib-bin wheel instead (slower encodings, the same results)" >&2
fi
if [ -n "$wheel" ]; then
    if [ "$(cat .venv/.facegrid-dlib 2>/dev/null)" != "$wheel" ] || ! installed dlib; then
        echo "setup: installing the fast encoder $(basename "$wheel")" >&2
        installed dlib-bin && "${pip[@]}" uninstall -y dlib-bin >&2
        "${pip[@]}" install --no-deps --force-reinstall "$wheel" >&2
        echo "$wheel" > .venv/.facegrid-dlib
    fi
    if ! .venv/bin/python -c 'import dlib; assert dlib.DLIB_USE_BLAS' 2>/dev/null; then
        echo "setup: the cached fast encoder $wheel does not load here (OpenBLAS removed?):" \
             "using the dlib-bin wheel; delete that file and run scripts/setup.sh to rebuild it" >&2
        use_bin
    fi
elif [ "${FACEGRID_DLIB:-fast}" = bin ] || ! installed dlib || [ ! -f .venv/.facegrid-dlib ]; then
    use_bin
fi
.venv/bin/python -c 'import face_recognition, dlib' >&2
# The candidate route's pyramid kernel (facegrid/resize.c), compiled into the cache folder now rather
# than at a filter's first start; without a compiler the filter makes the levels with dlib (slower).
.venv/bin/python -c 'import dlib; from facegrid import resize; k, why = resize.resizer_for(dlib)
print("setup: pyramid kernel ready" if k else f"setup: pyramid levels will be made by dlib ({why})")' >&2
