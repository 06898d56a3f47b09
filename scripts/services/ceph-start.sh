#!/usr/bin/env bash
# Start a throwaway single-node Ceph cluster with the RADOS Gateway (a real S3 server)
# for tests, on 127.0.0.1 only.
#
#   scripts/services/ceph-start.sh DIR
#
# One monitor, one OSD (memstore: objects live in RAM, up to ~3 GiB), one radosgw
# (beast frontend on a free port). Every file is inside DIR: DIR/ceph/ holds the
# conf, keyring, mon and osd data, run dir and logs; DIR/ceph-{mon,osd}.pid and
# DIR/radosgw.pid hold the daemons' PIDs; DIR/s3.env exports the S3 endpoint and keys.
# Nothing is read from or written to /etc/ceph or /var/lib/ceph.
#
# Ready means an authenticated S3 ListBuckets answered as our test user, not merely
# that a port is open. If anything is not up within SENTENIALX_SERVICES_TIMEOUT
# seconds (default 120), the script stops what it started and exits non-zero.
# Idempotent: if all three daemons from DIR are running, nothing is done.
# Stop with scripts/services/ceph-stop.sh DIR.
#
# Settings and traps: /work/shared/notes/ceph-rgw.md (measured on Debian 12, Ceph 16.2).
set -euo pipefail

die() { echo "ceph-start: $*" >&2; exit 1; }
start=$EPOCHREALTIME   # for the "up in N s" line

[ $# -eq 1 ] || die "usage: $0 DIR"
HERE=$(cd "$(dirname "$0")" && pwd -P)
mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)   # absolute: it is in the daemons' command lines
C=$DIR/ceph
CONF=$C/ceph.conf
ENV_FILE=$DIR/s3.env
TIMEOUT=${SENTENIALX_SERVICES_TIMEOUT:-120}

# Fixed test credentials: the cluster is throwaway and bound to loopback.
S3_UID=sentenialx-test
ACCESS_KEY=SENTENIALXTESTACCESS
SECRET_KEY=sentenialx-test-secret-key-loopback-only
REGION=us-east-1

# --- Packages -------------------------------------------------------------------------
need=(ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool)
missing() { local b; for b in "${need[@]}"; do command -v "$b" >/dev/null || return 0; done; return 1; }
if missing; then
    echo "ceph-start: installing Ceph (radosgw ceph-mon ceph-osd ceph-common) with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    pkgs=(radosgw ceph-mon ceph-osd ceph-common)
    # Try without `apt-get update` first (fast); update only if the lists are stale.
    if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2
    fi
    ! missing || die "Ceph installed but one of ${need[*]} is still missing"
fi
command -v curl >/dev/null || die "curl is needed for the S3 readiness check"

# --- PIDs we own ----------------------------------------------------------------------
# A daemon counts as ours and alive only if /proc/PID/cmdline names its binary and our
# conf: kill -0 is fooled by zombies (a dead child stays a zombie until we exit, and
# its cmdline is empty) and by PIDs reused after a reboot.
is_ours() {  # is_ours PIDFILE BINARY
    local pid
    [ -s "$1" ] || return 1
    pid=$(head -n 1 "$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    local args
    args=$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/cmdline") || return 1
    [ "$(basename -- "$(head -n 1 <<<"$args")")" = "$2" ] && grep -qxF -- "$CONF" <<<"$args"
}
proc_state() {  # proc_state PID: R, S, D, Z, ... or "gone"
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo gone; return; }
    st=${st##*) }          # after "PID (comm) "
    echo "${st%% *}"
}
all_running() {
    is_ours "$DIR/ceph-mon.pid" ceph-mon && is_ours "$DIR/ceph-osd.pid" ceph-osd &&
        is_ours "$DIR/radosgw.pid" radosgw
}

if all_running && [ -s "$ENV_FILE" ]; then
    echo "ceph-start: already running from $DIR" >&2
    echo "$ENV_FILE"
    exit 0
fi
# Partly running (a daemon died, or a previous start failed): stop the rest and build
# a fresh cluster; memstore data does not outlive its OSD anyway.
"$HERE/ceph-stop.sh" "$DIR" >&2
rm -rf "$C" "$ENV_FILE"
mkdir -p "$C/run" "$C/log" "$C/mon/ceph-a" "$C/rgw"

# From here on, any failure stops whatever this run started (ceph-stop.sh uses the
# PID files, written right after each start).
ok=0
cleanup() {
    if [ "$ok" != 1 ]; then
        echo "ceph-start: FAILED; stopping what was started (logs in $C/log)" >&2
        # The last lines of each daemon's output usually say why (port in use, ...).
        local f
        for f in "$C"/log/*.out; do
            [ -s "$f" ] || continue
            echo "--- tail of $f" >&2
            tail -n 5 "$f" >&2
        done
        "$HERE/ceph-stop.sh" "$DIR" >&2 || true
        rm -f "$ENV_FILE"
    fi
}
trap cleanup EXIT

# --- Ports ----------------------------------------------------------------------------
# One block of consecutive free ports below the kernel's ephemeral range (so outgoing
# connections cannot take them meanwhile): monitor, radosgw, then 10 for the OSD's
# messenger (`ms bind port min/max`; a v2-only OSD binds 4).
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3   # Debian's, not a shim or venv
read -r MON_PORT RGW_PORT MS_MIN MS_MAX < <("$PY" - <<'EOF'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(200):
    base = random.randrange(20000, 32000 - 12)
    if all(free(p) for p in range(base, base + 12)):
        print(base, base + 1, base + 2, base + 11)
        break
else:
    raise SystemExit("no block of 12 free ports found")
EOF
) || die "could not find free ports"

# --- Configuration --------------------------------------------------------------------
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$CONF" <<EOF
# Throwaway single-node test cluster made by scripts/services/ceph-start.sh. Loopback only.
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
mon initial members = a
run dir = $C/run
log file = $C/log/\$name.log
mon data = $C/mon/\$cluster-\$id
osd data = $C/osd/\$cluster-\$id
keyring = $C/keyring

# Loopback only, messenger v2 only, ports from our block: otherwise the OSD listens
# on 0.0.0.0 and on random ports.
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
ms bind port min = $MS_MIN
ms bind port max = $MS_MAX

# No cephx. "none" works only together with crc mode everywhere; without it radosgw
# retries for ever with "get_initial_auth_request returned -13".
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc

# One OSD holds every replica; radosgw creates 7-8 pools.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon allow pool delete = true

# With the default 1 s, every pool creation waits for paxos: radosgw then takes ~12 s
# to come up instead of ~1 s.
paxos propose interval = 0.05
paxos min wait = 0.01

# A CI disk that is nearly full must not make the monitor shut itself down.
mon data avail crit = 1
mon data avail warn = 2

[osd]
# Objects in RAM: fast start; the OSD refuses writes near the device size.
osd objectstore = memstore
memstore device bytes = 3221225472
# Sized for a 2-core machine.
osd memory target = 536870912
osd op num shards = 2

[client.rgw.local]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $C/rgw
# Deleted data would otherwise stay (in RAM, with memstore) for 2 hours.
rgw gc obj min wait = 10
rgw gc processor period = 10
# Lifecycle threads only slow shutdown down (by ~4 s).
rgw enable lc threads = false
EOF

export CEPH_CONF=$CONF           # for every ceph/radosgw-admin call below
ceph_cli() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }

# --- Waiting --------------------------------------------------------------------------
deadline=$(( $(date +%s) + TIMEOUT ))
started=()   # "pidfile binary" of daemons started so far, to notice one dying
wait_for() {  # wait_for DESCRIPTION COMMAND...: retry until it succeeds or the deadline
    local what=$1; shift
    until "$@" >/dev/null 2>&1; do
        local s
        for s in "${started[@]}"; do
            # shellcheck disable=SC2086
            is_ours $s || die "$(basename "${s%% *}" .pid) died while waiting for $what; see $C/log/"
        done
        [ "$(date +%s)" -lt "$deadline" ] ||
            die "timed out after ${TIMEOUT}s waiting for $what; see $C/log/"
        sleep 0.2
    done
}

# start_daemon NAME BINARY ARGS...: in its own session, holding none of our file
# descriptors (a caller reading our output through a pipe would otherwise never see
# end-of-file), its PID recorded in DIR/NAME.pid.
start_daemon() {
    local name=$1 bin=$2; shift 2
    setsid "$bin" -c "$CONF" "$@" </dev/null >"$C/log/$name.out" 2>&1 &
    local pid=$!
    echo "$pid" > "$DIR/$name.pid"
    # The daemon gets this same PID, but only once bash's fork has exec'd setsid and
    # setsid has exec'd the daemon: until then /proc/PID/cmdline names bash or setsid,
    # and during each exec it is briefly empty. So "not started yet" is judged from the
    # cmdline, but "died" only from the process state (gone, or a zombie).
    until is_ours "$DIR/$name.pid" "$bin"; do
        case $(proc_state "$pid") in
            gone | Z | X) die "$name exited at once; see $C/log/$name.out and $C/log/" ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s starting $name"
        sleep 0.05
    done
    started+=("$DIR/$name.pid $bin")   # from now on, wait_for notices if it dies
}

# --- Monitor --------------------------------------------------------------------------
# Even without cephx the monitor store needs a mon. key.
ceph-authtool --create-keyring "$C/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$C/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$C/monmap" --keyring "$C/keyring" \
    >"$C/log/mon-mkfs.out" 2>&1 || die "ceph-mon --mkfs failed; see $C/log/mon-mkfs.out"
start_daemon ceph-mon ceph-mon -i a -f
wait_for "the monitor" ceph_cli mon stat

# --- OSD ------------------------------------------------------------------------------
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph_cli osd new "$OSD_UUID") || die "ceph osd new failed"
mkdir -p "$C/osd/ceph-$OSD_ID"
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" \
    >"$C/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs failed; see $C/log/osd-mkfs.out"
start_daemon ceph-osd ceph-osd -i "$OSD_ID" -f
osd_up() { ceph_cli osd stat -f json | grep -q '"num_up_osds":1'; }
wait_for "the OSD to be up" osd_up

# --- RADOS Gateway --------------------------------------------------------------------
start_daemon radosgw radosgw -n client.rgw.local -f
ENDPOINT=http://127.0.0.1:$RGW_PORT
# Anonymous ListBuckets answers once the frontend serves (the gateway's pools exist).
wait_for "radosgw to answer on $ENDPOINT" curl -fsS --max-time 5 "$ENDPOINT/"
# The S3 user, created through the cluster (radosgw-admin talks to RADOS directly).
# Retried until the deadline: right after start the gateway may still be setting up
# its zone, and then the admin tool can fail once.
create_user() {
    radosgw-admin -c "$CONF" user info --uid="$S3_UID" >/dev/null 2>&1 ||
        radosgw-admin -c "$CONF" user create --uid="$S3_UID" --display-name="sentenialx tests" \
            --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >>"$C/log/user-create.out" 2>&1
}
wait_for "radosgw-admin to create the S3 user (see $C/log/user-create.out)" create_user

# Ready = an authenticated (SigV4) ListBuckets answers as our user. An anonymous call
# also gets 200, so check the owner. curl's --aws-sigv4 needs the payload hash header.
s3_ready() {
    curl -fsS --max-time 5 --user "$ACCESS_KEY:$SECRET_KEY" --aws-sigv4 "aws:amz:$REGION:s3" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        "$ENDPOINT/" | grep -qF "<ID>$S3_UID</ID>"
}
wait_for "an authenticated S3 ListBuckets on $ENDPOINT" s3_ready

cat > "$ENV_FILE" <<EOF
# S3 (Ceph RGW) test endpoint from $C (stop: scripts/services/ceph-stop.sh $DIR)
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_DEFAULT_REGION=$REGION
export SENTENIALX_TEST_S3_ENDPOINT=$ENDPOINT
EOF
ok=1
printf 'ceph-start: S3 up on %s (mon %s, osd %s, radosgw %s) in %s s\n' "$ENDPOINT" \
    "$(cat "$DIR/ceph-mon.pid")" "$(cat "$DIR/ceph-osd.pid")" "$(cat "$DIR/radosgw.pid")" \
    "$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $start}")" >&2
echo "$ENV_FILE"
