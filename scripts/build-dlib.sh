#!/usr/bin/env bash
# Build the fast face encoder once per machine and cache it: dlib from PyPI's source
# distribution, linked with OpenBLAS and compiled for AVX2/FMA. Its encodings equal
# the dlib-bin wheel's (within 1e-6) and take about a fifth of the time
# (docs/benchmarks.md). About 10 minutes on 2 cores, at the lowest CPU priority.
#
# Prints the cached wheel's path on stdout; the build log goes to the cache folder.
# Exit codes: 0 wheel ready, 1 the build failed (see the log), 2 this machine cannot
# build it (CPU without AVX2/FMA, no compiler or OpenBLAS, no way to install them).
#
# Usage: scripts/build-dlib.sh [--cached-only] [PYTHON]
#   --cached-only   do not build: exit 1 unless the wheel is already cached
#   PYTHON          the interpreter the wheel is for (default: .venv/bin/python)
# Cache: $FACEGRID_CACHE, else $XDG_CACHE_HOME/facegrid, else ~/.cache/facegrid.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

FLAGS="-O3 -mavx2 -mfma"   # default flags build a HOG detector 2.3x slower than dlib-bin's
. "$root/scripts/progress.sh"   # run_with_progress: the elapsed time and the build stage every 30 s

cached_only=0
[ "${1:-}" = "--cached-only" ] && { cached_only=1; shift; }
py="${1:-.venv/bin/python}"
DLIB_VERSION="$("$py" scripts/deps.py dlib)"   # pinned in pyproject.toml [tool.facegrid]
cache="${FACEGRID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/facegrid}"
say() { echo "build-dlib: $*" >&2; }

tag="$("$py" -c 'import sys, sysconfig; print("cp%d%d-%s" % (sys.version_info[:2] + (sysconfig.get_platform().replace("-", "_").replace(".", "_"),)))')"
key="dlib-$DLIB_VERSION-openblas-avx2-fma-$tag"
dir="$cache/wheels/$key"
found() { ls "$dir"/dlib-*.whl 2>/dev/null | head -1; }

if [ -n "$(found)" ]; then found; exit 0; fi
[ "$cached_only" = 1 ] && exit 1

# The CPU must have what the wheel is compiled for, or the wheel would crash here.
for flag in avx2 fma; do
    if ! grep -qw "$flag" /proc/cpuinfo 2>/dev/null; then
        say "this CPU has no ${flag^^}: not building the fast encoder (the dlib-bin wheel stays)"
        exit 2
    fi
done

# Build tools: a C++ compiler, Python's headers, OpenBLAS (CMake comes from PyPI).
include="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
missing=()
command -v g++ >/dev/null 2>&1 || missing+=(g++ make)
[ -f "$include/Python.h" ] || missing+=(python3-dev)
compgen -G "/usr/lib/*/libopenblas.so" >/dev/null || compgen -G "/usr/lib/libopenblas.so" >/dev/null \
    || missing+=(libopenblas-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo -n)
    say "installing build tools from Debian: ${missing[*]}"
    if ! { "${sudo_cmd[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"; } >&2; then
        say "cannot install ${missing[*]} (needs root or passwordless sudo): install them, then run scripts/setup.sh again"
        exit 2
    fi
fi

mkdir -p "$cache/wheels"
log="$cache/dlib-build.log"
# One build at a time per cache (setup.sh and a background build started by demo.sh).
exec 9>"$cache/dlib-build.lock"
if ! flock -n 9; then
    say "another build of the fast encoder is running (log: $log); waiting for it"
    flock 9
fi
if [ -n "$(found)" ]; then found; exit 0; fi

cores="$(nproc 2>/dev/null || echo 2)"
say "building dlib $DLIB_VERSION with OpenBLAS and $FLAGS on $cores cores, once per machine"
say "(about 10 minutes on 2 cores; a progress line every 30 s; log: $log)"
tmp="$(mktemp -d "$cache/wheels/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS
# -v: pip passes CMake's own lines ("[ 45%] Building ...") to the log, which the progress lines read
if ! run_with_progress build-dlib "$log" env CMAKE_BUILD_PARALLEL_LEVEL="$cores" CXXFLAGS="$FLAGS" CFLAGS="$FLAGS" \
        nice -n 19 "$py" -m pip --disable-pip-version-check wheel -v --no-cache-dir --no-deps --no-binary dlib \
        "dlib==$DLIB_VERSION" -w "$tmp"; then
    say "the build failed; the last lines of $log:"
    tail -n 15 "$log" >&2
    exit 1
fi
mkdir -p "$dir"
mv "$tmp"/dlib-*.whl "$dir"/
say "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s: $(found)"
found
