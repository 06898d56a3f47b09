#!/usr/bin/env bash
# Kill or restart only the RADOS Gateway of the Ceph test cluster that ceph-start.sh
# started in DIR, for fault tests ("radosgw died mid-upload, then came back").
#
#   scripts/services/radosgw.sh kill DIR    # SIGKILL radosgw, wait until it is gone
#   scripts/services/radosgw.sh start DIR   # start it again, wait until S3 answers
#
# The monitor and the OSD keep running, so every stored object (and every multipart
# upload in progress) is still there afterwards; the gateway comes back with the same
# configuration (DIR/ceph/ceph.conf: same port, same keys), so DIR/s3.env stays right.
# ceph-start.sh cannot do this: it builds a fresh, empty cluster on new ports.
# Only the PID in DIR/radosgw.pid is signalled, and only if /proc/PID/cmdline still
# names radosgw and DIR's conf. `start` is idempotent (a running gateway is left alone).
set -euo pipefail

die() { echo "radosgw: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 kill|start DIR"
ACTION=$1
[ -d "$2" ] || die "no $2"
DIR=$(cd "$2" && pwd -P)
C=$DIR/ceph
CONF=$C/ceph.conf
PID_FILE=$DIR/radosgw.pid
ENV_FILE=$DIR/s3.env
TIMEOUT=${SENTENIALX_SERVICES_TIMEOUT:-120}
[ -f "$CONF" ] || die "no Ceph cluster in $DIR (start one with ceph-start.sh)"

is_ours() {  # is_ours PID: PID runs radosgw with our conf (a zombie's cmdline is empty)
    local args
    args=$(tr '\0' '\n' 2>/dev/null < "/proc/$1/cmdline") || return 1
    [ "$(basename -- "$(head -n 1 <<<"$args")")" = radosgw ] && grep -qxF -- "$CONF" <<<"$args"
}
running_pid() {
    local pid
    [ -s "$PID_FILE" ] || return 1
    pid=$(head -n 1 "$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid" && echo "$pid"
}

case $ACTION in
kill)
    pid=$(running_pid) || { echo "radosgw: not running from $DIR" >&2; exit 0; }
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        is_ours "$pid" || { echo "radosgw: killed $pid" >&2; exit 0; }
        sleep 0.1
    done
    die "radosgw ($pid) is still running 10 s after SIGKILL"
    ;;
start)
    if pid=$(running_pid); then
        echo "radosgw: already running from $DIR ($pid)" >&2
        exit 0
    fi
    [ -s "$ENV_FILE" ] || die "no $ENV_FILE: the cluster in $DIR was stopped"
    # shellcheck disable=SC1090
    source "$ENV_FILE"
    # Not holding our caller's pipes (see ceph-start.sh); the same log as before.
    setsid radosgw -c "$CONF" -n client.rgw.local -f </dev/null >>"$C/log/radosgw.out" 2>&1 &
    echo "$!" > "$PID_FILE"
    deadline=$(( $(date +%s) + TIMEOUT ))
    # Ready = an authenticated ListBuckets answers as our user (see ceph-start.sh).
    until curl -fsS --max-time 5 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
            --aws-sigv4 "aws:amz:$AWS_DEFAULT_REGION:s3" \
            -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
            "$SENTENIALX_TEST_S3_ENDPOINT/" 2>/dev/null | grep -q "<ID>"; do
        [ "$(date +%s)" -lt "$deadline" ] || die "radosgw did not answer within ${TIMEOUT}s; see $C/log/"
        sleep 0.1
    done
    echo "radosgw: started $(cat "$PID_FILE") on $SENTENIALX_TEST_S3_ENDPOINT" >&2
    ;;
*) die "usage: $0 kill|start DIR" ;;
esac
