#!/usr/bin/env bash
# Stop the Ceph test cluster that ceph-start.sh started in DIR.
#
#   scripts/services/ceph-stop.sh DIR
#
# Only the recorded PIDs (DIR/radosgw.pid, DIR/ceph-osd.pid, DIR/ceph-mon.pid), in that
# order: clients before the OSD, the OSD before the monitor it reports to. A PID is
# signalled only if /proc/PID/cmdline still names the expected binary and DIR's conf,
# so a stale PID file can never hit an unrelated process. Waits for each to exit.
# Safe to run when nothing is running.
set -euo pipefail

die() { echo "ceph-stop: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
[ -d "$1" ] || { echo "ceph-stop: no $1, nothing to stop" >&2; exit 0; }
DIR=$(cd "$1" && pwd -P)
CONF=$DIR/ceph/ceph.conf
GRACE=${SENTENIALX_CEPH_STOP_GRACE:-15}   # seconds before SIGTERM becomes SIGKILL

# True while PID runs BINARY with our conf. A zombie (exited, not yet reaped) has an
# empty cmdline and so counts as gone, which is what we want; kill -0 would not.
is_ours() {  # is_ours PID BINARY
    local args
    args=$(tr '\0' '\n' 2>/dev/null < "/proc/$1/cmdline") || return 1
    [ "$(basename -- "$(head -n 1 <<<"$args")")" = "$2" ] && grep -qxF -- "$CONF" <<<"$args"
}

wait_gone() {  # wait_gone PID BINARY SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        is_ours "$1" "$2" || return 0
        sleep 0.1
    done
    return 1
}

alive() {  # alive NAME: DIR/NAME.pid names a running NAME with our conf
    local pid
    pid=$(head -n 1 "$DIR/$1.pid" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid" "$1"
}
# A daemon whose cluster is already partly gone cannot shut down cleanly: radosgw
# without its OSD hangs ~35 s on SIGTERM, the OSD without its monitor ~5 s (measured).
# The data is throwaway, so such a daemon gets SIGKILL straight away.
sig_for() {  # sig_for NAME -> TERM or KILL
    case $1 in
        radosgw) alive ceph-osd && alive ceph-mon && echo TERM || echo KILL ;;
        ceph-osd) alive ceph-mon && echo TERM || echo KILL ;;
        *) echo TERM ;;
    esac
}

rc=0
for name in radosgw ceph-osd ceph-mon; do
    pidfile=$DIR/$name.pid
    [ -f "$pidfile" ] || continue
    pid=$(head -n 1 "$pidfile")
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! is_ours "$pid" "$name"; then
        echo "ceph-stop: $name (pid ${pid:-?}) is not running from $DIR; dropping its pid file" >&2
        rm -f "$pidfile"
        continue
    fi
    t0=$EPOCHREALTIME
    sig=$(sig_for "$name")
    [ "$sig" = TERM ] || echo "ceph-stop: $name's cluster is partly gone; sending SIGKILL" >&2
    kill -"$sig" "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$name" "$GRACE"; then
        echo "ceph-stop: $name (pid $pid) ignored SIGTERM for ${GRACE}s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" "$name" 10; then
            echo "ceph-stop: $name (pid $pid) is still running" >&2
            rc=1
            continue
        fi
    fi
    rm -f "$pidfile"
    printf 'ceph-stop: stopped %s (pid %s) in %s s\n' "$name" "$pid" \
        "$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t0}")" >&2
done
# The env file would now point at nothing.
[ "$rc" -ne 0 ] || rm -f "$DIR/s3.env"
exit "$rc"
