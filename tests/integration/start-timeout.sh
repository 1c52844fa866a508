#!/bin/bash
# The start timeout: EXTEND_TIMEOUT_USEC= from a slow instance extends it; without it, the same
# slow instance is rolled back at StartTimeoutSec=.
. "$(dirname "$0")/lib.sh"

conf=$WORK/grmd.conf
write_conf() {
        cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.3 $1
StartTimeoutSec=1
CONF
}
write_conf ""
start_grmd --config "$conf"

write_conf "--start-delay 2 --extend-timeout 4"
grmctl restart >"$WORK/out" 2>&1 || fail "extended start was not waited for: $(cat "$WORK/out")"
grep -q "extend" "$WORK/out" || fail "no extend step reported: $(cat "$WORK/out")"
ready=$(generation_field 2 ready_usec)
[ "$ready" -ge 2000000 ] || fail "generation 2 ready after $ready us"
ok "EXTEND_TIMEOUT_USEC= extends the start timeout (ready after $ready us)"

write_conf "--start-delay 2"
expect_rc 6 grmctl restart
[ "$(status_json | jq .grmd.working)" = 2 ] || fail "working generation changed"
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "generation 2 not serving"
ok "StartTimeoutSec= from the file rolls back a slow start"
stop_grmd || fail "grmd did not exit cleanly"
