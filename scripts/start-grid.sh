#!/usr/bin/env bash
# Start a whole local grid in the background: beanstalkd (-z, -b), one filter.py
# pool of N workers, and a collector. Pid files, logs, the binlog and (by
# default) the database live under one folder; scripts/stop-grid.sh stops it.
#
#   scripts/start-grid.sh [--dir DIR] [--port PORT] [--workers N] [--db PATH]
#
#   --dir DIR        folder for pids, logs, binlog, database (default ./grid)
#   --port PORT      beanstalkd port on 127.0.0.1 (default 11300)
#   --workers N      filter worker processes (default 1; "auto" allowed)
#   --db PATH        database (default DIR/facegrid.db)
#   --max-job-size B beanstalkd -z (default 16777216; under 1 MiB the queuer
#                    refuses it unless --allow-small-jobs)
# Then: .venv/bin/python queuer.py --beanstalkd 127.0.0.1:PORT PHOTOS/ and scripts/status
# (start-grid.sh prints these with full paths).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir=./grid port=11300 workers=1 db="" max_job_size=16777216
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --db) db="$2"; shift 2 ;;
        --max-job-size) max_job_size="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "start-grid.sh: unknown option $1; see --help" >&2; exit 2 ;;
    esac
done
case "$port" in ''|*[!0-9]*) echo "start-grid.sh: --port $port is not a number" >&2; exit 2 ;; esac
mkdir -p "$dir/logs" "$dir/binlog"
dir="$(cd "$dir" && pwd)"
db="${db:-$dir/facegrid.db}"
python="$root/.venv/bin/python"
[ -x "$python" ] || python="$(command -v python3)"
beanstalkd_bin="$(command -v beanstalkd || echo /usr/bin/beanstalkd)"
address="127.0.0.1:$port"

running() {  # running NAME: the pid in NAME.pid is alive
    local pidfile="$dir/$1.pid"
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

for name in beanstalkd filter collector; do
    if running "$name"; then
        echo "start-grid.sh: $name is already running (pid $(cat "$dir/$name.pid")); scripts/stop-grid.sh --dir $dir first" >&2
        exit 2
    fi
done

start() {  # start NAME COMMAND...: in the background, log and pid file under $dir
    local name="$1"; shift
    nohup "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/$name.pid"
    echo "started $name (pid $!), log $dir/logs/$name.log"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
if port_open; then  # someone else's server: our filter and collector must not join it
    echo "start-grid.sh: port $port on 127.0.0.1 is already in use by another program; pass --port with a free one" >&2
    exit 2
fi
start beanstalkd "$beanstalkd_bin" -l 127.0.0.1 -p "$port" -z "$max_job_size" -b "$dir/binlog"
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    if ! running beanstalkd; then
        echo "start-grid.sh: beanstalkd exited at once; see $dir/logs/beanstalkd.log" >&2
        tail -n 3 "$dir/logs/beanstalkd.log" >&2
        rm -f "$dir/beanstalkd.pid"
        exit 3
    fi
    sleep 0.1
done
sleep 0.3  # a beanstalkd that lost the port to another program exits at once: be sure ours lives
if ! running beanstalkd; then
    echo "start-grid.sh: beanstalkd exited; see $dir/logs/beanstalkd.log (port $port taken?)" >&2
    tail -n 3 "$dir/logs/beanstalkd.log" >&2
    rm -f "$dir/beanstalkd.pid"
    exit 3
fi
start filter "$python" "$root/filter.py" --beanstalkd "$address" --workers "$workers"
start collector "$python" "$root/collector.py" --beanstalkd "$address" --db "$db"
# Next steps that work as pasted, from any folder: the queuer runs with the venv's python
# (./queuer.py would run whatever python3 is first on PATH, without the packages).
q() { printf '%q' "$1"; }
echo "grid up on $address, database $db"
echo "queue photos: $(q "$python") $(q "$root/queuer.py") --beanstalkd $address PHOTOS/"
echo "watch it:     $(q "$root/scripts/status") --beanstalkd $address --db $(q "$db") --watch"
echo "problems:     $(q "$root/scripts/status") --problems --db $(q "$db")"
echo "stop it:      $(q "$root/scripts/stop-grid.sh") --dir $(q "$dir")"
