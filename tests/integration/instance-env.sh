#!/bin/bash
# What an instance gets: LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES for several addresses and
# several sockets each, NOTIFY_SOCKET, GRM_GENERATION, GRM_QUIC_SERVER_IDS and GRM_QUIC_CONFIG_ID,
# the configured user, no capabilities; with --connect-per-client under --user also the
# preload library's variables, the setting in grmctl status, and the sockets given to the user.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 --listen 'udp:[::1]:9001' --sockets-per-generation 2 \
        --user nobody --quic-server-id-prefix C0A8 --quic-config-id 3 -- "$GRM_ECHO"
pid=$(generation_field 1 pid)
env_of() { tr '\0' '\n' </proc/"$pid"/environ | sed -n "s/^$1=//p"; }
[ "$(env_of LISTEN_FDS)" = 4 ] || fail "LISTEN_FDS=$(env_of LISTEN_FDS)"
[ "$(env_of LISTEN_PID)" = "$pid" ] || fail "LISTEN_PID=$(env_of LISTEN_PID), pid $pid"
[ "$(env_of LISTEN_FDNAMES)" = "grm:grm:grm:grm" ] || fail "LISTEN_FDNAMES=$(env_of LISTEN_FDNAMES)"
[ "$(env_of GRM_GENERATION)" = 1 ] || fail "GRM_GENERATION=$(env_of GRM_GENERATION)"
env_of NOTIFY_SOCKET | grep -q '^@' || fail "NOTIFY_SOCKET=$(env_of NOTIFY_SOCKET)"
# Generation 1 is in slot 0: per socket the prefix, then slot 0 | socket k | generation 1, in
# LISTEN_FDS order (address-major; socket k of either address has the same server ID).
[ "$(env_of GRM_QUIC_SERVER_IDS)" = "c0a8000001:c0a8008001:c0a8000001:c0a8008001" ] ||
        fail "GRM_QUIC_SERVER_IDS=$(env_of GRM_QUIC_SERVER_IDS)"
[ "$(env_of GRM_QUIC_CONFIG_ID)" = 3 ] || fail "GRM_QUIC_CONFIG_ID=$(env_of GRM_QUIC_CONFIG_ID)"
uid=$(awk '/^Uid:/ { print $2 }' /proc/"$pid"/status)
[ "$uid" = "$(id -u nobody)" ] || fail "instance runs as uid $uid"
grep -q '^CapEff:\s*0000000000000000' /proc/"$pid"/status || fail "instance has capabilities: $(grep Cap /proc/$pid/status)"
grep -q '^CapBnd:\s*0000000000000000' /proc/"$pid"/status || fail "instance bounding set not empty"
# fds 3-6 are its sockets, and no other socket of grmd's leaked in.
for fd in 3 4 5 6; do
        readlink /proc/"$pid"/fd/$fd | grep -q '^socket:' || fail "fd $fd is not a socket"
done
n=$(find /proc/"$pid"/fd -lname 'socket:*' | wc -l)
[ "$n" = 4 ] || fail "instance has $n sockets: $(ls -l /proc/$pid/fd)"
[ "$(send_udp 127.0.0.1 9000)" = 1 ] || fail "IPv4 address not served"
[ "$(send_udp '[::1]' 9001)" = 1 ] || fail "IPv6 address not served"
[ "$(status_json | jq '.groups | length')" = 2 ] || fail "expected two groups"
[ -z "$(env_of GRM_BIND_FDS)" ] && [ -z "$(env_of LD_PRELOAD)" ] || fail "preload variables without --connect-per-client"
[ "$(status_json | jq -r .grmd.connect_per_client)" = no ] || fail "connect_per_client: $(status_json | jq .grmd)"
owner=$(stat -L -c %u /proc/"$pid"/fd/3)
[ "$owner" = 0 ] || fail "socket owned by uid $owner without --connect-per-client"
ok "instance environment, user and capabilities"
stop_grmd || fail "grmd did not exit cleanly"

# ConnectPerClient= under User=: the library in per-client mode, the group's sockets (the
# original and each generation's) given to the user, the setting in grmctl status.
# In the sanitizer pass grm-echo is an ASan program with libgrm-bind.so preloaded before the
# ASan runtime: let it start (the library itself is never sanitized).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
start_grmd --listen udp:127.0.0.1:9000 --listen tcp:127.0.0.1:9002 --user nobody --connect-per-client -- "$GRM_ECHO"
pid=$(generation_field 1 pid)
env_of LD_PRELOAD | grep -q "^$GRM_BIND_LIBRARY" || fail "LD_PRELOAD=$(env_of LD_PRELOAD)"
[ "$(env_of GRM_BIND_FDS)" = "3 4" ] || fail "GRM_BIND_FDS=$(env_of GRM_BIND_FDS)"
[ "$(env_of GRM_BIND_INTERCEPT)" = 0 ] || fail "GRM_BIND_INTERCEPT=$(env_of GRM_BIND_INTERCEPT)"
[ "$(env_of GRM_BIND_PER_CLIENT)" = 1 ] || fail "GRM_BIND_PER_CLIENT=$(env_of GRM_BIND_PER_CLIENT)"
nobody=$(id -u nobody)
owner=$(stat -L -c %u /proc/"$pid"/fd/3)
[ "$owner" = "$nobody" ] || fail "UDP generation socket owned by uid $owner, not nobody ($nobody)"
owner=$(stat -L -c %u /proc/"$pid"/fd/4)
[ "$owner" = 0 ] || fail "TCP listener owned by uid $owner: only UDP groups are given to the user"
# grmd's original socket (ss prints uid: only when it is not 0).
ss -Huanpe 'sport = :9000' | grep "pid=$GRMD_PID," | grep -q " uid:$nobody " ||
        fail "original UDP socket not given to nobody: $(ss -Huanpe 'sport = :9000')"
[ "$(status_json | jq -r .grmd.connect_per_client)" = yes ] || fail "connect_per_client: $(status_json | jq .grmd)"
[ "$(status_json | jq -r .grmd.intercept_bind)" = no ] || fail "intercept_bind: $(status_json | jq .grmd)"
grmctl status | grep -q "^instances: a connected socket per client (libgrm-bind.so)" ||
        fail "status text: $(grmctl status)"
[ "$(send_udp 127.0.0.1 9000)" = 1 ] || fail "not served under --connect-per-client"
grmctl restart >/dev/null || fail "restart under --connect-per-client failed"
pid=$(generation_field 2 pid)
owner=$(stat -L -c %u /proc/"$pid"/fd/3)
[ "$owner" = "$nobody" ] || fail "generation 2's socket owned by uid $owner"
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "not served by generation 2 after a restart"
ok "--connect-per-client: per-client mode, sockets given to the user, shown in status"
stop_grmd || fail "grmd did not exit cleanly"

# Without CAP_CHOWN grmd cannot give the sockets to the user: no generation starts, and the
# log says what is missing (the failure docs/SYSTEMD.md's capability table quotes).
capsh --drop=cap_chown -- -c 'exec "$0" "$@"' "$GRMD" --control "$SOCK" --listen udp:127.0.0.1:9000 \
        --user nobody --connect-per-client -- "$GRM_ECHO" >"$WORK/grmd.log" 2>&1 &
GRMD_PID=$!
for _ in $(seq 50); do
        grep -q "grmd needs CAP_CHOWN" "$WORK/grmd.log" && break
        sleep 0.1
done
grep -q "Failed to give the socket of udp:127.0.0.1:9000 to user nobody (uid $nobody) for ConnectPerClient=yes: Operation not permitted (grmd needs CAP_CHOWN" \
        "$WORK/grmd.log" || fail "no CAP_CHOWN error: $(cat "$WORK/grmd.log")"
[ "$(status_json | jq .grmd.working)" = 0 ] || fail "a generation works without CAP_CHOWN"
ok "--connect-per-client --user without CAP_CHOWN: refused with the reason"

# A socket without SO_REUSEPORT from systemd is refused with advice.
python3 - "$GRMD" <<'PY' >"$WORK/noreuse.out" 2>&1 && fail "grmd accepted a socket without SO_REUSEPORT"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 9100))
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
pid = os.fork()
if pid == 0:
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(sys.argv[1], [sys.argv[1], "--control", "/tmp/grm-noreuse.sock", "--", "/bin/true"])
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st))
PY
grep -q "ReusePort=yes" "$WORK/noreuse.out" || fail "no ReusePort advice: $(cat "$WORK/noreuse.out")"
ok "socket without SO_REUSEPORT refused"
stop_grmd || fail "grmd did not exit cleanly"
