#!/bin/bash
# System test harness (host side): installs the build as a package would (`meson install
# --destdir`, --prefix=/usr), boots systemd in a systemd-nspawn container made of the host's /usr
# with the installed tree laid over it, and runs one test there as the unit
# grm-systest@TEST.service. The test writes its log, exit code and the container's journal to
# a bind-mounted folder and powers the container off; this script prints them and exits 0
# (pass), 1 (fail) or 77 (skipped; a failure when GRM_TEST_NO_SKIP=1, as under CI).
#
# Usage: boot-test.sh TEST   (TEST.sh in this folder; run by meson with GRM_BUILD_ROOT and
#                             GRM_SOURCE_ROOT set, see meson.build)
#
# The container: a tmpfs root (--volatile=yes: /etc starts empty and is filled at boot,
# systemd-sysusers creates grm-echo from the installed sysusers.d file), its own network
# namespace (only lo, so the tests use port 9000 without disturbing the host), the
# capabilities and bpf() grmd needs. /etc/grm is a writable copy of the installed one, so a
# test can change grmd's config. Nothing outlives this script: the container is killed at the
# deadline or when this script is (it lives in this script's PID namespace), and the work
# folder is removed.
set -euo pipefail

TEST=${1:?usage: boot-test.sh TEST}
HERE=$(cd "$(dirname "$0")" && pwd)
: "${GRM_BUILD_ROOT:?}" "${GRM_SOURCE_ROOT:?}"
# Seconds until the container is killed (GRM_SYSTEST_DEADLINE), and until the test inside is
# stopped (GRM_SYSTEST_TIMEOUT): earlier, so that its journal is still collected.
DEADLINE=${GRM_SYSTEST_DEADLINE:-240}
TEST_TIMEOUT=${GRM_SYSTEST_TIMEOUT:-$((DEADLINE > 60 ? DEADLINE - 30 : DEADLINE / 2))}

skip() {
        echo "SKIP: $*"
        if [ "${GRM_TEST_NO_SKIP:-}" = 1 ]; then
                echo "GRM_TEST_NO_SKIP=1: a skipped test is a failure"
                exit 1
        fi
        exit 77
}

fail() {
        echo "FAIL: $*"
        exit 1
}

[ -f "$HERE/$TEST.sh" ] || fail "no test $TEST.sh in $HERE"
[ "$(id -u)" = 0 ] || skip "needs root"
command -v systemd-nspawn >/dev/null || skip "needs systemd-nspawn (apt-get install systemd-container)"
[ -x /lib/systemd/systemd ] || skip "needs systemd (/lib/systemd/systemd) to boot in the container"
command -v jq >/dev/null || skip "needs jq"

# Everything below runs in a PID namespace of its own (and a mount namespace, for its /proc):
# if this script is killed, even with SIGKILL, the namespace dies and the container with it.
if [ -z "${GRM_SYSTEST_IN_NS:-}" ]; then
        exec unshare --pid --fork --kill-child --mount-proc \
                env GRM_SYSTEST_IN_NS=1 GRM_SYSTEST_MACHINE="grm-systest-$$" bash "$0" "$@"
fi

LOGDIR=$GRM_BUILD_ROOT/meson-logs
rm -f "$LOGDIR/system-$TEST".*
# In the build folder, and removed first: what a killed run left behind goes with the next one.
WORK=$GRM_BUILD_ROOT/system-test-work/$TEST
rm -rf "$WORK"
mkdir -p "$WORK"
MACHINE=${GRM_SYSTEST_MACHINE:?}
NSPAWN_PID=

# Kills the container: SIGTERM asks nspawn for a clean power-off; then SIGKILL to the
# container's init (its PID namespace dies with it) and to nspawn.
kill_container() {
        local i
        [ -n "$NSPAWN_PID" ] || return 0
        kill -TERM "$NSPAWN_PID" 2>/dev/null || true
        for i in $(seq 50); do
                kill -0 "$NSPAWN_PID" 2>/dev/null || break
                sleep 0.2
        done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
                for p in $(cat /proc/"$NSPAWN_PID"/task/*/children 2>/dev/null); do
                        kill -KILL "$p" 2>/dev/null || true
                done
                sleep 0.5
                kill -KILL "$NSPAWN_PID" 2>/dev/null || true
        fi
        wait "$NSPAWN_PID" 2>/dev/null || true
        NSPAWN_PID=
}

cleanup() {
        local rc=$?
        kill_container
        # nspawn's per-machine propagation folder: /run is not a tmpfs on every host, and
        # nspawn then refuses to remove it itself.
        rm -rf "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null || true
        if grep -qF "$WORK" /proc/self/mountinfo; then
                echo "FAIL: mounts left behind under $WORK"
                rc=1
        fi
        rm -rf "$WORK"
        rmdir "$GRM_BUILD_ROOT/system-test-work" 2>/dev/null || true
        exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# 1. The package, as `meson install` ships it with --prefix=/usr. A build configured with
# another prefix is configured once more, next to it, with --prefix=/usr.
build=$GRM_BUILD_ROOT
prefix=$(meson introspect --buildoptions "$build" | jq -r '.[] | select(.name == "prefix") | .value')
if [ "$prefix" != /usr ]; then
        build=$GRM_BUILD_ROOT/system-test-prefix-usr
        if [ ! -f "$build/build.ninja" ]; then
                meson setup --prefix=/usr -Dtests=false "$build" "$GRM_SOURCE_ROOT" >"$WORK/setup.log" 2>&1 ||
                        { cat "$WORK/setup.log"; fail "meson setup --prefix=/usr failed"; }
        fi
        ninja -C "$build" >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; fail "build failed"; }
fi
ROOT=$WORK/root
meson install -C "$build" --destdir "$ROOT" --no-rebuild --quiet >"$WORK/install.log" 2>&1 ||
        { cat "$WORK/install.log"; fail "meson install failed"; }
[ -f "$ROOT/usr/lib/systemd/system/grm-echo.service" ] || fail "meson install did not install grm-echo.service"
[ -f "$ROOT/etc/grm/grm-echo.conf" ] || fail "meson install did not install /etc/grm/grm-echo.conf"

# 2. The test itself, added to the tree here only (never by meson install): the template
# unit and the scripts.
install -m 0644 "$HERE/grm-systest@.service" "$ROOT/usr/lib/systemd/system/"
install -d "$ROOT/usr/lib/grm-systest"
install -m 0755 "$HERE"/*.sh "$ROOT/usr/lib/grm-systest/"
cp -a "$ROOT/etc/grm" "$WORK/etc-grm"
RESULTS=$WORK/results
mkdir -p "$RESULTS"
echo "GRM_SYSTEST_TIMEOUT=$TEST_TIMEOUT" >"$RESULTS/env"

# 3. Boot. --register=no --keep-unit: no host systemd (machined) needed; the container stays
# in this script's cgroup.
start=$(date +%s%N)
systemd-nspawn --quiet --console=read-only -D / --volatile=yes --boot --register=no --keep-unit \
        -M "$MACHINE" --private-network \
        --capability=CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON,CAP_SYS_RESOURCE --system-call-filter=bpf \
        --overlay-ro="/usr:$ROOT/usr:/usr" \
        --bind="$WORK/etc-grm:/etc/grm" \
        --bind="$RESULTS:/run/grm-systest" \
        -- systemd.firstboot=off "systemd.unit=grm-systest@$TEST.service" \
        >"$WORK/console.log" 2>&1 </dev/null &
NSPAWN_PID=$!
timed_out=0
for _ in $(seq $((DEADLINE * 5))); do
        kill -0 "$NSPAWN_PID" 2>/dev/null || break
        sleep 0.2
done
if kill -0 "$NSPAWN_PID" 2>/dev/null; then
        timed_out=1
        kill_container
fi
nspawn_rc=0
if [ -n "$NSPAWN_PID" ]; then
        wait "$NSPAWN_PID" || nspawn_rc=$?
        NSPAWN_PID=
fi
elapsed_ms=$((($(date +%s%N) - start) / 1000000))

# 4. Results.
echo "=== system test $TEST: container ran ${elapsed_ms} ms (nspawn exit $nspawn_rc) ==="
[ -f "$RESULTS/test.log" ] && cat "$RESULTS/test.log"
rc=$(cat "$RESULTS/rc" 2>/dev/null || echo none)
if [ "$timed_out" = 1 ] || [ "$rc" != 0 ]; then
        mkdir -p "$LOGDIR"
        for f in journal.txt journal.export; do
                [ -f "$RESULTS/$f" ] && cp "$RESULTS/$f" "$LOGDIR/system-$TEST.$f"
        done
        cp "$WORK/console.log" "$LOGDIR/system-$TEST.console.log"
        if [ -f "$RESULTS/journal.txt" ]; then
                echo "--- container journal (last 150 lines; all of it in $LOGDIR/system-$TEST.journal.txt, .journal.export) ---"
                tail -n 150 "$RESULTS/journal.txt"
        else
                echo "--- container console (last 80 lines; all of it in $LOGDIR/system-$TEST.console.log) ---"
                tail -n 80 "$WORK/console.log"
        fi
        [ "$timed_out" = 1 ] && fail "the container did not power off within ${DEADLINE}s; killed"
        [ "$rc" = none ] && fail "the test did not finish (no result; nspawn exit $nspawn_rc)"
        [ "$rc" = 77 ] && skip "skipped inside the container"
        fail "test $TEST exited $rc"
fi
echo "PASS: $TEST"
