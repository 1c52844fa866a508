#!/bin/bash
# The config file is re-read at each restart: a new command line takes effect in the new
# generation; the command line given to grmd still wins over the file.
. "$(dirname "$0")/lib.sh"

conf=$WORK/grmd.conf
cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.5
DrainTimeoutSec=10
CONF
start_grmd --config "$conf" --drain-timeout 7
pid1=$(generation_field 1 pid)
tr '\0' ' ' </proc/"$pid1"/cmdline | grep -q -- "--idle-exit 0.5" || fail "gen 1 command line"

sed -i "s|^ExecStart=.*|ExecStart=$GRM_ECHO --idle-exit 0.7 --start-delay 0.1|" "$conf"
grmctl restart >/dev/null || fail "restart failed"
pid2=$(generation_field 2 pid)
tr '\0' ' ' </proc/"$pid2"/cmdline | grep -q -- "--idle-exit 0.7 --start-delay 0.1" || fail "gen 2 did not get the new command line"
# --drain-timeout 7 on the command line beats DrainTimeoutSec=10 in the file.
d=$(generation_field 1 drain_deadline_usec)
[ "$d" -le 7000000 ] && [ "$d" -gt 5000000 ] || fail "drain deadline $d: command line did not win"
ok "config re-read; command line wins"
stop_grmd || fail "grmd did not exit cleanly"
