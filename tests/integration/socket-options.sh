#!/bin/bash
# Sockets from systemd: generation sockets copy the original's options (IPV6_V6ONLY, bound
# device, receive buffer) and names; --receive-buffer overrides the buffer.
. "$(dirname "$0")/lib.sh"

# Stand in for systemd: a v6only socket on [::]:9200 bound to lo with a 100,000-byte buffer,
# passed as fd 3 named "quic", then exec grmd in its place.
start_activated() {
        python3 - "$GRMD" "$SOCK" "$GRM_ECHO" "$@" <<'PY' >"$WORK/grmd.log" 2>&1 &
import os, socket, sys
grmd, sock, echo, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 100000)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("::", 9200))
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="quic")
os.execv(grmd, [grmd, "--control", sock, "--sockets-per-generation", "2"] + extra + ["--", echo])
PY
        GRMD_PID=$!
        wait_for 10 '.grmd.working == 1' || fail "generation 1 did not start"
}

start_activated
sockets=$(ss -uanme | grep -A1 ':9200 ' | paste - - )
echo "$sockets"
[ "$(grep -c . <<<"$sockets")" = 3 ] || fail "expected the original and 2 generation sockets"
grep -v 'v6only:1' <<<"$sockets" && fail "a socket lost IPV6_V6ONLY"
grep -v '%lo:9200' <<<"$sockets" && fail "a socket lost its bound device"
grep -v 'rb200000' <<<"$sockets" && fail "a socket lost its receive buffer size"
pid=$(generation_field 1 pid)
[ "$(tr '\0' '\n' </proc/"$pid"/environ | sed -n 's/^LISTEN_FDNAMES=//p')" = quic:quic ] || fail "names not kept"
[ "$(status_json | jq -r '.groups[0].name')" = quic ] || fail "group name"
[ "$(send_udp '[::1]' 9200)" = 1 ] || fail "not served over IPv6"
ok "generation sockets copy v6only, device, buffer and name"
stop_grmd || fail "grmd did not exit cleanly"

start_activated --receive-buffer 1M
n=$(ss -uanme | grep -A1 ':9200 ' | grep -c 'rb2097152')
[ "$n" = 2 ] || fail "--receive-buffer 1M: $n sockets with a 2 MiB (doubled) buffer"
ok "--receive-buffer sets the generation sockets' buffer"
stop_grmd || fail "grmd did not exit cleanly"
