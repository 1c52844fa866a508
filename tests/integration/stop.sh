#!/bin/bash
# SIGTERM to grmd drains every generation, kills what is left at the deadline, and exits 0 with
# nothing left running.
. "$(dirname "$0")/lib.sh"

# No --control: the socket goes to $RUNTIME_DIRECTORY/grmd.sock, where grmctl finds it too.
export RUNTIME_DIRECTORY=$WORK/rt
mkdir -p "$RUNTIME_DIRECTORY"
SOCK=$RUNTIME_DIRECTORY/grmd.sock
GRM_DEFAULT_CONTROL=1 start_grmd --listen udp:127.0.0.1:9000 --drain-timeout 1 -- "$GRM_ECHO" --idle-exit 0.3
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "control socket mode $(stat -c %a "$SOCK")"
"$GRMCTL" status >/dev/null || fail "grmctl did not find the socket through \$RUNTIME_DIRECTORY"
grmctl restart >/dev/null || fail "restart failed"
conf_pids="$(generation_field 1 pid) $(generation_field 2 pid)"
# Keep flows busy so generation 2 cannot go idle before its deadline and must be killed.
"$GRM_LOAD" -q -f 5 -r 200 -d 3 127.0.0.1:9000 >/dev/null 2>&1 &
sleep 0.3
start=$(date +%s%N)
stop_grmd || fail "grmd exited non-zero"
elapsed=$((($(date +%s%N) - start) / 1000000))
[ "$elapsed" -lt 3000 ] || fail "grmd took $elapsed ms to stop with a 1 s drain timeout"
for p in $conf_pids; do
        kill -0 "$p" 2>/dev/null && fail "instance $p still running"
done
[ -e "$SOCK" ] && fail "control socket left behind"
ok "stopped in $elapsed ms, nothing left"
