#!/usr/bin/env bash
# Stop a grid started by scripts/start-grid.sh, gracefully: SIGTERM to the
# filter pool (each worker finishes its photo), then to the collector (it stores
# its last batch), then to beanstalkd (queued jobs stay in the binlog). Each is
# waited for; then a report says how each one ended.
#
#   scripts/stop-grid.sh [--dir DIR] [--timeout SECONDS] [--force]
#
#   --dir DIR          the folder given to start-grid.sh (default ./grid)
#   --timeout SECONDS  wait this long for each process (default 150: TTR + margin)
#   --force            SIGKILL what is still running after the timeout
# Exit code: 0 all stopped, 1 something is still running.
set -euo pipefail
dir=./grid timeout=150 force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "stop-grid.sh: unknown option $1; see --help" >&2; exit 2 ;;
    esac
done
if [ ! -d "$dir" ]; then
    echo "stop-grid.sh: $dir does not exist; pass the --dir given to start-grid.sh" >&2
    exit 2
fi
declare -A expect=([filter]=filter.py [collector]=collector.py [beanstalkd]=beanstalkd)
report=() status=0

ours() {  # ours PID NAME: the pid still runs the program we started (not a reused pid)
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "${expect[$2]}"
}

alive() {  # alive PID: running, and not a zombie waiting for its parent
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

last_line() {  # last_line NAME: the last log line, to show how it ended
    [ -f "$dir/logs/$1.log" ] && tail -n 1 "$dir/logs/$1.log" | cut -c1-160 || true
}

stop() {  # stop NAME
    local name="$1" pidfile="$dir/$1.pid" pid waited=0
    if [ ! -f "$pidfile" ]; then report+=("$name: no pid file, not started here"); return; fi
    pid="$(cat "$pidfile")"
    if ! alive "$pid" || ! ours "$pid" "$name"; then
        report+=("$name: was not running (stale pid $pid)"); rm -f "$pidfile"; return
    fi
    kill -TERM "$pid"
    while alive "$pid" && [ "$waited" -lt $((timeout * 10)) ]; do
        sleep 0.1; waited=$((waited + 1))
    done
    if ! alive "$pid"; then
        report+=("$name: stopped (pid $pid, $((waited / 10)).$((waited % 10))s); last log line: $(last_line "$name")")
        rm -f "$pidfile"
    elif [ "$force" = 1 ]; then
        kill -KILL "$pid" 2>/dev/null || true
        report+=("$name: did not stop in ${timeout}s; killed (pid $pid)")
        rm -f "$pidfile"
    else
        report+=("$name: STILL RUNNING after ${timeout}s (pid $pid); wait, or rerun with --force")
        status=1
    fi
}

for name in filter collector beanstalkd; do stop "$name"; done
printf '%s\n' "${report[@]}"
exit "$status"
