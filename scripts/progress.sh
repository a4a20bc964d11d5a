# Sourced by scripts/build-dlib.sh: run a long build quietly, with a progress line every 30 s.
#
#   run_with_progress LABEL LOG COMMAND...
#
# runs COMMAND with its output in LOG and, every $FACEGRID_PROGRESS_EVERY seconds (30),
# prints on stderr "LABEL: 3 min 30 s, compiling, 45% done": the time elapsed and the
# build's stage as its log shows it (build_stage). Returns COMMAND's exit code.

build_stage() {  # build_stage LOG: the stage the last lines of a pip + CMake build log show
    tail -n 300 "$1" 2>/dev/null | tr '\r' '\n' | awk '
        match($0, /\[ *[0-9]+%\]/)                  { p = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", p)
                                                      s = "compiling, " p " done" }
        /^ *-- (Configuring|Looking|Check|Found|Detecting|Build files|Generating)/ { s = "configuring (cmake)" }
        /Collecting|Downloading|Obtaining/          { s = "fetching the source" }
        /Building wheel|Preparing metadata|Installing build dependencies/ { if (s == "") s = "preparing the build" }
        /Linking CXX/                               { s = "linking" }
        /Created wheel|Stored in directory/        { s = "packing the wheel" }
        END                                         { print (s == "" ? "starting" : s) }'
}

run_with_progress() {
    local label="$1" log="$2"
    shift 2
    local every="${FACEGRID_PROGRESS_EVERY:-30}" start=$SECONDS waited t pid
    "$@" >"$log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null; exit 143' INT TERM
    while kill -0 "$pid" 2>/dev/null; do
        waited=0
        while [ "$waited" -lt "$every" ] && kill -0 "$pid" 2>/dev/null; do
            sleep 1
            waited=$((waited + 1))
        done
        kill -0 "$pid" 2>/dev/null || break
        t=$((SECONDS - start))
        echo "$label: $((t / 60)) min $((t % 60)) s, $(build_stage "$log")" >&2
    done
    trap - INT TERM
    wait "$pid"
}
