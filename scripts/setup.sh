#!/usr/bin/env bash
# Install everything facegrid needs on a fresh Debian machine, idempotently:
#   - beanstalkd from Debian (apt-get), if missing
#   - a virtual environment in .venv with the Python packages
# face_recognition is installed with --no-deps after its real dependencies, so pip
# never tries to compile dlib from source (dlib-bin is the prebuilt wheel).
# Usage: scripts/setup.sh [--dev]     (--dev adds the test tools)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

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

want="$(cat requirements.txt requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)"
[ "${1:-}" = "--dev" ] && want="$want-dev"
stamp=.venv/.facegrid-installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python packages into .venv (first run takes a minute)" >&2
    "${pip[@]}" install -U pip wheel >&2
    "${pip[@]}" install -r requirements.txt >&2
    "${pip[@]}" install --no-deps face_recognition==1.3.0 >&2
    [ "${1:-}" = "--dev" ] && "${pip[@]}" install -r requirements-dev.txt >&2
    .venv/bin/python -c 'import face_recognition, cv2, greenstalk, sqlite_utils, PIL, numpy, tqdm' >&2
    echo "$want" > "$stamp"
fi
