#!/bin/bash
# ExecCheck= runs as the instance's user with no capabilities (issue 8, item 11): the check
# records its uid, capability sets, seccomp mode and no_new_privs; with User=65534 it is uid
# 65534, without User= uid 0, both times with every capability set empty and the instance
# system call filter; a failing check still rejects the restart (exit 4).
. "$(dirname "$0")/lib.sh"
chmod 0711 "$WORK"  # the uid 65534 check writes below
mkdir -m 0777 "$WORK/results"
cat >"$WORK/check.sh" <<'SH'
#!/bin/sh
grep -E '^(Uid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|Seccomp|NoNewPrivs):' /proc/self/status >"$1"
exit "${2:-0}"
SH
chmod 0755 "$WORK/check.sh"

conf=$WORK/grmd.conf
set_conf() {
        cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.3
ExecCheck=$1
$2
CONF
}
check_record() {
        local f=$WORK/results/$1 uid=$2
        [ -s "$f" ] || fail "$1: the check recorded nothing"
        grep -Eq "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid" "$f" || fail "$1: not uid $uid: $(cat "$f")"
        for c in CapInh CapPrm CapEff CapBnd CapAmb; do
                grep -Eq "^$c:\s+0000000000000000" "$f" || fail "$1: $c not empty: $(cat "$f")"
        done
        grep -Eq '^Seccomp:\s+2' "$f" || fail "$1: no seccomp filter: $(cat "$f")"
        grep -Eq '^NoNewPrivs:\s+1' "$f" || fail "$1: no no_new_privs: $(cat "$f")"
        ok "$1: $(grep -E '^(Uid|CapEff|CapBnd|Seccomp)' "$f" | tr -s '\t\n' '  ')"
}

set_conf "$WORK/check.sh $WORK/results/first" "User=65534"
start_grmd --config "$conf"
check_record first 65534
set_conf "$WORK/check.sh $WORK/results/nobody" "User=65534"
expect_rc 0 grmctl restart
check_record nobody 65534
set_conf "$WORK/check.sh $WORK/results/root" ""
expect_rc 0 grmctl restart
check_record root 0
set_conf "$WORK/check.sh $WORK/results/failing 3" "User=65534"
expect_rc 4 grmctl restart
grep -q "exec-check exited with status 3" "$WORK/out" || fail "no reason: $(cat "$WORK/out")"
check_record failing 65534
[ "$(status_json | jq .grmd.working)" = 3 ] || fail "working generation changed"
ok "a failing check (as uid 65534) rejects the restart, generation 3 keeps working"
stop_grmd || fail "grmd did not exit cleanly"
