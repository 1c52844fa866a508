#!/bin/bash
# Notify datagrams at systemd's limits (issue 8, items 4 and 5): READY=1 with a 2,000-byte
# STATUS= is accepted, a datagram of exactly 4,096 bytes too, one byte more is rejected and
# counted (the restart then times out, exit 6). The instances send no READY=1 of their own
# (grm-echo --never-ready): only the datagram under test can make them ready. And a flood of
# datagrams from an unprivileged local user is ignored and counted without filling the log.
. "$(dirname "$0")/lib.sh"
HI="/usr/bin/python3 $(dirname "$(readlink -f "$0")")/hostile-instance.py"

conf=$WORK/grmd.conf
set_command() {
        cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
[Instance]
ExecStart=$1
DrainTimeoutSec=5
CONF
}
set_command "$HI --notify-status 2000 -- $GRM_ECHO --never-ready --idle-exit 0.3"
start_grmd --config "$conf"
len=$(status_json | jq -r '.generations[] | select(.generation == 1) | .status | length')
[ "$len" = 1024 ] || fail "status of generation 1 has $len characters, expected the first 1024"
[ "$(status_json | jq .grmd.notify_oversized)" = 0 ] || fail "2,000-byte STATUS= counted as oversized"
ok "READY=1 with a 2,000-byte STATUS= accepted (first 1,024 bytes kept)"

set_command "$HI --notify-bytes 4096 -- $GRM_ECHO --never-ready --idle-exit 0.3"
expect_rc 0 grmctl restart --timeout 5
ok "a 4,096-byte notify datagram accepted"

set_command "$HI --notify-bytes 4097 -- $GRM_ECHO --never-ready --idle-exit 0.3"
expect_rc 6 grmctl restart --timeout 2
[ "$(status_json | jq .grmd.notify_oversized)" = 1 ] || fail "oversized datagram not counted: $(status_json | jq .grmd)"
grep -q "Ignoring notify message of 4097 bytes .*at most 4096 bytes" "$WORK/grmd.log" ||
        fail "no clear message for the oversized datagram"
[ "$(status_json | jq .grmd.working)" = 2 ] || fail "working generation changed"
ok "a 4,097-byte notify datagram rejected, counted and logged; rolled back (exit 6)"

# The flood: 100,000 datagrams as uid 65534 (a process outside every generation).
notify=$(tr '\0' '\n' </proc/"$(generation_field 2 pid)"/environ | sed -n 's/^NOTIFY_SOCKET=//p')
lines_before=$(wc -l <"$WORK/grmd.log")
start=$(date +%s.%N)
setpriv --reuid 65534 --regid 65534 --clear-groups /usr/bin/python3 - "$notify" <<'PY'
import socket, sys
addr = sys.argv[1]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(100000):
    s.sendto(b"READY=1\nSTATUS=flood", addr)   # blocks while grmd's queue is full: none lost
PY
end=$(date +%s.%N)
wait_for 10 '.grmd.notify_ignored == 100000' || fail "flood not counted"
lines=$(( $(wc -l <"$WORK/grmd.log") - lines_before ))
suppressed=$(status_json | jq .grmd.notify_log_suppressed)
# At most 20 warnings per 10 s window (and a few lines of slack).
windows=$(awk -v s="$start" -v e="$end" 'BEGIN { print int((e - s) / 10) + 2 }')
[ "$lines" -le $((20 * windows + 5)) ] || fail "the flood wrote $lines log lines"
logged=$(tail -n +"$((lines_before + 1))" "$WORK/grmd.log" | grep -c "not part of any live generation" || true)
[ $((logged + suppressed)) = 100000 ] || fail "logged $logged + suppressed $suppressed != 100000"
grep -q "Ignoring" "$WORK/grmd.log" || fail "nothing logged about the flood"
awk -v s="$start" -v e="$end" -v l="$lines" -v n="$suppressed" \
        'BEGIN { printf "ok: 100000 datagrams in %.1f s: %d log lines, %d suppressed and counted\n", e - s, l, n }'
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "generation 2 not serving after the flood"

stop_grmd || fail "grmd did not exit cleanly"
