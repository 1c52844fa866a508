#!/bin/bash
# A datagram activates the service, then `systemctl stop grm-echo.service` with no traffic: the
# service stays stopped. The activating datagram reached the socket unit's socket before grmd
# attached its steering program, where no instance reads it; if it stayed queued there, the
# socket would still be readable when the service stops, and systemd would start it again at
# once. grmd drops it (and logs how many) when its first generation works.
. "$(dirname "$0")/lib.sh"

systemctl start "$SOCKET_UNIT" || fail "systemctl start $SOCKET_UNIT failed"
grm-load --json -q -f 1 -r 100 -d 0.01 -g 500 --ports "$(ports 1)" "$TARGET" >/dev/null || true
wait_unit 10 "$UNIT" active || fail "the datagram did not start $UNIT"
wait_for 10 '.grmd.working == 1' || fail "generation 1 is not working"
probe 1
queued=$(ss -uampn | grep -A1 '127.0.0.1:9000 ' | grep -A1 'systemd' | grep -o 'skmem:(r[0-9]*' | sed 's/.*(r//')
echo "bytes queued on the socket unit's 127.0.0.1:9000 socket: ${queued:-?}"
[ "${queued:-}" = 0 ] || fail "the socket unit's socket still holds $queued bytes after generation 1 started"
unit_journal | grep -i 'dropped' || true

step "stop with no traffic"
systemctl stop "$UNIT" || fail "systemctl stop exited $?"
sleep 1
[ "$(unit_prop "$UNIT" ActiveState)" = inactive ] ||
        fail "$UNIT is $(unit_prop "$UNIT" ActiveState) 1 s after stop: the socket started it again"
[ "$(unit_prop "$SOCKET_UNIT" ActiveState)" = active ] || fail "$SOCKET_UNIT is not listening"
ok "stopped, and stays stopped; the socket listens"

step "the next datagram starts it again"
grm-load --json -q -f 1 -r 100 -d 0.01 -g 500 --ports "$(ports 1)" "$TARGET" >/dev/null || true
wait_unit 10 "$UNIT" active || fail "the datagram did not start $UNIT again"
wait_for 10 '.grmd.working == 1' || fail "generation 1 is not working"
probe 1
ok "activated again"
