#!/bin/bash
# The control socket refuses instances (issue 8, item 12): an instance running as uid 0 without
# User= (so past the uid check), and a child of it in a session of its own, get "permission
# denied" (grmctl exit 3), counted in control_refused and logged; grmd keeps its working
# generation; root outside every generation is still served.
. "$(dirname "$0")/lib.sh"
HI="/usr/bin/python3 $(dirname "$(readlink -f "$0")")/hostile-instance.py"

start_grmd --listen udp:127.0.0.1:9000 -- $HI --grmctl "$GRMCTL" "$SOCK" "$WORK/rc-main" \
        --grmctl-setsid "$GRMCTL" "$SOCK" "$WORK/rc-setsid" -- "$GRM_ECHO"
for f in rc-main rc-setsid; do
        for _ in $(seq 100); do [ -s "$WORK/$f" ] && break; sleep 0.05; done
        [ "$(cat "$WORK/$f")" = 3 ] || fail "$f: grmctl from the instance exited $(cat "$WORK/$f" 2>/dev/null), expected 3"
done
[ "$(awk '/^Uid:/ { print $2 }' /proc/"$(generation_field 1 pid)"/status)" = 0 ] || fail "instance not uid 0"
[ "$(status_json | jq .grmd.control_refused)" = 2 ] || fail "refusals not counted: $(status_json | jq .grmd)"
grep -q "Refusing control connection from pid [0-9]*, uid 0: it runs in the cgroup of generation 1" "$WORK/grmd.log" ||
        fail "refusal not logged with its reason"
[ "$(status_json | jq .grmd.working)" = 1 ] || fail "working generation changed"
[ "$(status_json | jq .grmd.restarts_done)" = 1 ] || fail "a restart happened"
ok "uid 0 instance and its setsid child refused (exit 3), counted, logged"
expect_rc 0 grmctl restart
ok "root outside the generations still served"
stop_grmd || fail "grmd did not exit cleanly"
