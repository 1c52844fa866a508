#!/bin/bash
# Instances cannot change their group's steering (issue 8, item 2): an unprivileged instance
# (uid 65534, no capabilities) and one running as uid 0 without User= try, through their own
# socket, SO_DETACH_REUSEPORT_BPF, a cBPF "ret #0" with SO_ATTACH_REUSEPORT_CBPF and
# SO_ATTACH_REUSEPORT_EBPF, by the native and (on x86-64) the 32-bit system call ABI directly
# and through socketcall(), and io_uring_setup() (io_uring's socket commands would bypass
# setsockopt): every one fails with EPERM, other socket options still work, and a load running
# across both restarts loses nothing and moves no flow.
. "$(dirname "$0")/lib.sh"
HI="/usr/bin/python3 $(dirname "$(readlink -f "$0")")/hostile-instance.py"
chmod 0711 "$WORK"  # the uid 65534 instance writes its results below
mkdir -m 0777 "$WORK/results"

conf=$WORK/grmd.conf
set_instance() {
        cat >"$conf" <<CONF
[Listen]
Datagram=udp:127.0.0.1:9000
ReceiveBuffer=4M
[Instance]
ExecStart=$1
$2
DrainTimeoutSec=5
CONF
}
set_instance "$GRM_ECHO --idle-exit 0.5" "User=65534"
start_grmd --config "$conf"

"$GRM_LOAD" --json -f 200 -r 5000 -d 5 --ports 20000-20999 127.0.0.1:9000 >"$WORK/load.json" &
load=$!
sleep 1
set_instance "$HI --sockopts $WORK/results/nobody -- $GRM_ECHO --idle-exit 0.5" "User=65534"
expect_rc 0 grmctl restart
sleep 1
set_instance "$HI --sockopts $WORK/results/root -- $GRM_ECHO --idle-exit 0.5" ""
expect_rc 0 grmctl restart
wait "$load" || fail "load: $(cat "$WORK/load.json")"

check_results() {
        local f=$WORK/results/$1 want uid=$2
        [ -s "$f" ] || fail "no results from the $1 instance"
        want="detach cbpf ebpf io_uring"
        [ -n "${GRM_SOCKOPT32:-}" ] && want="$want detach-int80 socketcall-detach-int80"
        for name in $want; do
                grep -qx "$name EPERM" "$f" || fail "$1: $name not refused: $(cat "$f")"
        done
        grep -qx "rcvbuf ok" "$f" || fail "$1: an unrelated option was refused: $(cat "$f")"
        grep -qx "uid $uid" "$f" || fail "$1: not uid $uid: $(cat "$f")"
        ok "$1 instance: $(tr '\n' ',' <"$f")"
}
check_results nobody 65534
check_results root 0
grep -q '^Seccomp:\s*2' /proc/"$(generation_field 3 pid)"/status || fail "generation 3 has no seccomp filter"
grep -q '^NoNewPrivs:\s*1' /proc/"$(generation_field 3 pid)"/status || fail "generation 3 without no_new_privs"
jq -e '.lost == 0 and .moved == 0 and .sent > 0' "$WORK/load.json" >/dev/null || fail "load: $(cat "$WORK/load.json")"
ok "steering untouched: $(jq -c '{sent, lost, moved}' "$WORK/load.json")"
[ "$(send_udp 127.0.0.1 9000)" = 3 ] || fail "generation 3 not serving new flows"
stop_grmd || fail "grmd did not exit cleanly"
