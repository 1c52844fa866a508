# Shared by the integration tests: each test runs in private network, PID and mount namespaces
# (so it uses only its own loopback, and every process it started dies with it), drives the
# built grmd, grmctl, grm-echo and grm-load, and exits 0 (pass), 1 (fail) or 77 (skipped; a
# failure when GRM_TEST_NO_SKIP=1, as under CI).
set -euo pipefail

skip() {
        echo "SKIP: $*"
        if [ "${GRM_TEST_NO_SKIP:-}" = 1 ]; then
                echo "GRM_TEST_NO_SKIP=1: a skipped test is a failure"
                exit 1
        fi
        exit 77
}

if [ -z "${GRM_TEST_IN_NS:-}" ]; then
        [ "$(id -u)" = 0 ] || skip "needs root"
        unshare --net --pid --fork --mount-proc true 2>/dev/null || skip "cannot create namespaces"
        exec env GRM_TEST_IN_NS=1 unshare --net --pid --fork --mount-proc -- bash "$0" "$@"
fi

: "${GRMD:?}" "${GRMCTL:?}" "${GRM_ECHO:?}" "${GRM_LOAD:?}"
ip link set lo up
WORK=$(mktemp -d /tmp/grm-test.XXXXXX)
SOCK=$WORK/grmd.sock
GRMD_PID=
TEST_NAME=$(basename "$0" .sh)
# The base cgroups of grmds (grmd-HASH under the root of cgroup v2) that exist before the test:
# any other one after it is the test's, also one of a grmd the test SIGKILLed itself.
CGROUP_V2=/sys/fs/cgroup/unified
[ -f "$CGROUP_V2/cgroup.procs" ] || CGROUP_V2=/sys/fs/cgroup
ls -d "$CGROUP_V2"/grmd-* >"$WORK/cgroups-before" 2>/dev/null || true

# cgroup_is_ours DIR: whether a process of this test (this PID namespace) runs in DIR's subtree.
# Another test's processes (another suite run on the same machine, in a PID namespace of its own)
# read as 0 in cgroup.procs here: such a cgroup is not this test's to end.
cgroup_is_ours() {
        find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null | grep -qv '^0$'
}

# The base cgroup a grmd with this test's control socket makes (cgroup_base_name() in
# src/shared/cgroup-util.c: "grmd-" and the FNV-1a hash of the path), to remove it even empty.
OWN_CGROUP=$CGROUP_V2/$(python3 -c '
import sys
h = 0xcbf29ce484222325
for c in sys.argv[1].encode():
    h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
print("grmd-%016x" % h)' "$SOCK")

cleanup() {
        local rc=$?
        if [ -n "$GRMD_PID" ] && kill -0 "$GRMD_PID" 2>/dev/null; then
                kill -KILL "$GRMD_PID" 2>/dev/null || true
        fi
        if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -f "$WORK/grmd.log" ]; then
                echo "--- grmd log ---"
                tail -n 60 "$WORK/grmd.log"
        fi
        # cgroups a test made or learnt of (cgroup v2 is not namespaced here): empty ones go.
        local f d
        for f in "$WORK"/cgroup-*; do
                [ -f "$f" ] && find "$(cat "$f")" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
        for d in "$CGROUP_V2"/grmd-*; do
                [ -d "$d" ] && ! grep -qxF "$d" "$WORK/cgroups-before" || continue
                if cgroup_is_ours "$d"; then
                        # What still runs in it is the test's: end it, then remove.
                        [ -f "$d/cgroup.kill" ] && echo 1 >"$d/cgroup.kill" 2>/dev/null
                        for _ in $(seq 20); do
                                grep -q '^populated 0' "$d/cgroup.events" 2>/dev/null && break
                                sleep 0.05
                        done
                elif [ "$d" != "$OWN_CGROUP" ]; then
                        continue # another test's, running beside this one
                fi
                find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
        rm -rf "$WORK"
        # Leaving the PID namespace kills whatever is left in it.
}
trap cleanup EXIT

fail() {
        echo "FAIL: $*"
        exit 1
}

ok() {
        echo "ok: $*"
}

grmctl() {
        "$GRMCTL" -s "$SOCK" "$@"
}

status_json() {
        grmctl status --json
}

# wait_for SECONDS JQ-FILTER: polls grmctl status --json until the filter yields true.
wait_for() {
        local secs=$1 filter=$2 i
        for i in $(seq $((secs * 20))); do
                if status_json 2>/dev/null | jq -e "$filter" >/dev/null 2>&1; then
                        return 0
                fi
                sleep 0.05
        done
        echo "timed out after ${secs}s waiting for: $filter"
        status_json 2>/dev/null || true
        return 1
}

# start_grmd GRMD-ARGS... -- COMMAND...: starts grmd in the background with the control socket
# at $SOCK and waits until generation 1 works (unless GRM_NO_WAIT=1).
# With GRM_DEFAULT_CONTROL=1 no --control is given (grmd uses $RUNTIME_DIRECTORY/grmd.sock).
start_grmd() {
        if [ "${GRM_DEFAULT_CONTROL:-}" = 1 ]; then
                "$GRMD" "$@" >"$WORK/grmd.log" 2>&1 &
        else
                "$GRMD" --control "$SOCK" "$@" >"$WORK/grmd.log" 2>&1 &
        fi
        GRMD_PID=$!
        if [ "${GRM_NO_WAIT:-}" != 1 ]; then
                wait_for 10 '.grmd.working == 1' || fail "generation 1 did not start"
                remember_cgroup
        fi
}

# steady_fds PID: how many descriptors PID holds, the least of 10 samples 50 ms apart (a
# control connection, or the socket watch's netlink socket, is open only for a moment).
steady_fds() {
        python3 -c 'import os, sys, time
counts = []
for _ in range(10):
    counts.append(len(os.listdir("/proc/%s/fd" % sys.argv[1])))
    time.sleep(0.05)
print(min(counts))' "$1"
}

# udp_inodes PID PORT: the inodes of the UDP sockets bound to PORT that PID holds, sorted, one a
# line (/proc/net/udp{,6} by local port, /proc/PID/fd by socket:[inode]).
udp_inodes() {
        python3 -c 'import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
bound = set()
for table in ("/proc/net/udp", "/proc/net/udp6"):
    with open(table) as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                bound.add(fields[9])
held = set()
for fd in os.listdir("/proc/%s/fd" % pid):
    try:
        target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
    except OSError:
        continue
    if target.startswith("socket:[") and target[8:-1] in bound:
        held.add(target[8:-1])
for inode in sorted(held, key=int):
    print(inode)' "$1" "$2"
}

# cgroup_mount: where cgroup v2 is (the hybrid layout's unified hierarchy, or the unified layout).
cgroup_mount() {
        if [ -f /sys/fs/cgroup/unified/cgroup.procs ]; then echo /sys/fs/cgroup/unified; else echo /sys/fs/cgroup; fi
}

# remember_cgroup: notes grmd's base cgroup, so that the clean-up removes what a killed grmd
# left (cgroup v2 is not namespaced here: it outlives the test's namespaces).
remember_cgroup() {
        local cg
        cg=$(status_json 2>/dev/null | jq -r '.grmd.cgroup // empty') || true
        [ -n "$cg" ] && echo "$(cgroup_mount)$cg" >"$WORK/cgroup-base-$GRMD_PID"
        return 0
}

stop_grmd() {
        kill -TERM "$GRMD_PID"
        local rc=0
        wait "$GRMD_PID" || rc=$?
        GRMD_PID=
        return $rc
}

# generation_field GEN FIELD
generation_field() {
        status_json | jq -r --argjson g "$1" ".generations[] | select(.generation == \$g) | .$2"
}

# send_udp ADDR PORT: one short new flow (a source port never used before in this test);
# prints the generation that answered it (empty if none did).
# (It is called in $(...) subshells, so the port counter lives in a file.)
echo 50000 >"$WORK/send-udp-port"
send_udp() {
        local port
        port=$(($(cat "$WORK/send-udp-port") + 1))
        echo "$port" >"$WORK/send-udp-port"
        "$GRM_LOAD" --json -f 1 -r 10 -d 0.1 -g 500 --ports "$port-$port" "$1:$2" 2>/dev/null |
                jq -r '.generations[0].generation // empty'
}

# expect_rc WANT COMMAND...: runs COMMAND, fails unless it exits with WANT.
expect_rc() {
        local want=$1 rc=0
        shift
        "$@" >"$WORK/out" 2>&1 || rc=$?
        if [ "$rc" != "$want" ]; then
                cat "$WORK/out"
                fail "'$*' exited $rc, expected $want"
        fi
}
