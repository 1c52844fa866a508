#!/bin/bash
# A working instance that dies unexpectedly is reported and replaced by a new generation; a
# crash loop backs off.
. "$(dirname "$0")/lib.sh"

conf=$WORK/grmd.conf
cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.5
# The back-off of working crashes is under test, not the settle time: a crash 0.1 s after
# READY=1 must count as a working crash (settle.sh tests the rollback inside the settle time).
SettleSec=0
CONF
start_grmd --config "$conf"
pid1=$(generation_field 1 pid)
kill -SEGV "$pid1"
wait_for 10 '.grmd.working == 2' || fail "no replacement generation"
generation_field 1 failure | grep -q "SIGSEGV" || fail "crash reason missing: $(generation_field 1 failure)"
grep -q "Working generation 1 .* unexpectedly" "$WORK/grmd.log" || fail "crash not logged"
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "replacement not serving"
ok "crashed instance replaced"

# A crash loop: every instance aborts shortly after becoming ready; replacements back off.
sed -i "s|^ExecStart=.*|ExecStart=$GRM_ECHO --crash-after 0.1|" "$conf"
grmctl restart >/dev/null || fail "restart to crashing config failed"
sleep 3
n=$(status_json | jq .grmd.restarts_done)
[ "$n" -ge 4 ] && [ "$n" -le 12 ] || fail "$n generations in 3 s of crash loop: back-off not working"
grep -q "Starting a new generation in 800 ms" "$WORK/grmd.log" || fail "back-off delays not growing"
ok "crash loop backs off ($n generations in 3 s)"
stop_grmd || fail "grmd did not exit cleanly"
