#!/bin/bash
# grmctl restart's exit codes 3-7, each provoked for real, with the old generation still
# serving afterwards.
. "$(dirname "$0")/lib.sh"

conf=$WORK/grmd.conf
write_conf() {
        cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.5 $1
StartTimeoutSec=5
DrainTimeoutSec=10
${2:-}
CONF
}
serving() {
        local g
        g=$(send_udp 127.0.0.1 9000)
        [ "$g" = "$1" ] || fail "expected generation $1 to answer, got '$g'"
}

write_conf ""
start_grmd --config "$conf"
serving 1

# 3: unreachable (no such socket), and permission denied (a uid grmd does not accept).
expect_rc 3 "$GRMCTL" -s "$WORK/nonexistent.sock" restart
chmod 0666 "$SOCK"
chmod 0755 "$WORK"
expect_rc 3 setpriv --reuid=65534 --regid=65534 --clear-groups "$GRMCTL" -s "$SOCK" restart
grep -q "permission denied" "$WORK/out" || fail "no permission-denied message: $(cat "$WORK/out")"
[ "$(status_json | jq .grmd.control_refused)" = 1 ] || fail "refused connection not counted"
chmod 0600 "$SOCK"
ok "exit 3: unreachable and permission denied"

# 4: invalid config file, then a failing ExecCheck=. Nothing changes.
echo "[Instance]
ExecStart=" >"$conf"
expect_rc 4 grmctl restart
grep -q "configuration rejected" "$WORK/out" || fail "no config message: $(cat "$WORK/out")"
write_conf "" "ExecCheck=/bin/sh -c 'exit 3'"
expect_rc 4 grmctl restart
grep -q "exec-check exited with status 3" "$WORK/out" || fail "no exec-check message: $(cat "$WORK/out")"
[ "$(status_json | jq .grmd.working)" = 1 ] || fail "working generation changed"
serving 1
ok "exit 4: config and exec-check rejected, nothing changed"

# 5: the new instance fails before ready (exits; reports ERRNO=).
write_conf "--fail-start"
expect_rc 5 grmctl restart
grep -q "exited with status 1" "$WORK/out" || fail "no exit reason: $(cat "$WORK/out")"
serving 1
write_conf "--errno 22"
expect_rc 5 grmctl restart
grep -q "ERRNO=22" "$WORK/out" || fail "no ERRNO reason: $(cat "$WORK/out")"
serving 1
ok "exit 5: failed before ready, rolled back"

# 6: never ready within --timeout.
write_conf "--never-ready"
expect_rc 6 grmctl restart --timeout 1
grep -q "not ready" "$WORK/out" || fail "no timeout reason: $(cat "$WORK/out")"
serving 1
ok "exit 6: not ready in time, rolled back"

# 7: another restart in progress.
write_conf "--start-delay 2"
grmctl restart >"$WORK/first" 2>&1 &
first=$!
wait_for 5 '.grmd.restart == "in-progress"' || fail "first restart did not start"
expect_rc 7 grmctl restart
wait "$first" || fail "first restart failed: $(cat "$WORK/first")"
# Generations 2-4 failed above; numbers are never reused, so this one is 5.
grep -q "generation 5 " "$WORK/first" || fail "unexpected generation: $(cat "$WORK/first")"
serving 5
ok "exit 7: busy; the first restart completed"

# The failed generations left nothing behind: only generation 5 is live, 2-4 are failed.
live=$(status_json | jq '[.generations[] | select(.state == "starting" or .state == "working")] | length')
[ "$live" = 1 ] || fail "$live live generations"
[ "$(status_json | jq -r '[.generations[] | select(.state == "failed") | .generation] | sort | join(",")')" = 2,3,4 ] ||
        fail "failed generations: $(status_json | jq -c .generations)"
stop_grmd || fail "grmd did not exit cleanly"
