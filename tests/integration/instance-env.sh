#!/bin/bash
# What an instance gets: LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES for several addresses and
# several sockets each, NOTIFY_SOCKET, GRM_GENERATION, GRM_QUIC_SERVER_IDS and GRM_QUIC_CONFIG_ID,
# the configured user, no capabilities.
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
ok "instance environment, user and capabilities"

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
