#!/bin/bash
# A TCP listener from systemd: every generation's listeners copy the original's backlog
# (read with TCP_INFO), IPV6_V6ONLY, bound device, TCP_DEFER_ACCEPT, TCP_FASTOPEN, TCP_NODELAY,
# keep-alive and its idle time, and the receive buffer it was given; its name reaches the
# instance; connections are served over IPv6. The generation's sockets are read from the
# instance itself (pidfd_getfd). A TCP socket that does not listen is refused.
. "$(dirname "$0")/lib.sh"

# Stand in for systemd: a v6only TCP listener on [::]:9300 bound to lo, with the options of a
# .socket unit's Backlog=37, DeferAcceptSec=5, FastOpen=16, NoDelay=yes, KeepAlive=yes,
# KeepAliveTimeSec=77, ReceiveBuffer=100000, passed as fd 3 named "dns"; then exec grmd.
python3 - "$GRMD" "$SOCK" "$GRM_ECHO" <<'PY' >"$WORK/grmd.log" 2>&1 &
import os, socket, sys
grmd, sock, echo = sys.argv[1:4]
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 100000)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 77)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
s.bind(("::", 9300))
s.listen(37)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="dns")
os.execv(grmd, [grmd, "--control", sock, "--sockets-per-generation", "2", "--", echo])
PY
GRMD_PID=$!
wait_for 10 '.grmd.working == 1' || fail "generation 1 did not start"
[ "$(status_json | jq -r '.groups[0].address')" = 'tcp:[::]:9300' ] || fail "group address: $(status_json | jq -c .groups)"
[ "$(status_json | jq -r '.groups[0].backlog')" = 37 ] || fail "group backlog: $(status_json | jq -c .groups)"

pid=$(generation_field 1 pid)
[ "$(tr '\0' '\n' </proc/"$pid"/environ | sed -n 's/^LISTEN_FDNAMES=//p')" = dns:dns ] || fail "names not kept"
python3 - "$pid" <<'PY' || fail "a generation listener lost an option"
import ctypes, os, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(int(sys.argv[1]))
bad = 0
for target in (3, 4):
    fd = libc.syscall(438, pidfd, target, 0)  # pidfd_getfd
    if fd < 0:
        sys.exit("pidfd_getfd(%d): %s" % (target, os.strerror(ctypes.get_errno())))
    s = socket.socket(fileno=fd)
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    got = {
        "listening": s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
        "backlog": struct.unpack_from("I", info, 28)[0],  # tcpi_sacked: a listener's backlog
        "v6only": s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY),
        "device": s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0").decode(),
        "rcvbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        "defer_accept": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0,
        "fastopen": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN),
        "nodelay": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
        "keepalive": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "keepidle": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "port": s.getsockname()[1],
    }
    want = {"listening": 1, "backlog": 37, "v6only": 1, "device": "lo", "rcvbuf": 200000,
            "defer_accept": True, "fastopen": 16, "nodelay": True, "keepalive": 1, "keepidle": 77,
            "port": 9300}
    print("fd %d: %s" % (target, got))
    for k in want:
        if got[k] != want[k]:
            print("fd %d: %s is %r, expected %r" % (target, k, got[k], want[k]))
            bad += 1
    s.close()
sys.exit(1 if bad else 0)
PY
ok "generation listeners copy backlog, v6only, device, buffer, defer-accept, fast open, nodelay, keep-alive"

out=$("$GRM_LOAD" --tcp --json -r 50 -L 2 -d 0.5 '[::1]:9300') || fail "not served over IPv6: $out"
[ "$(jq -r '[.generations[].generation] | unique | join(",")' <<<"$out")" = 1 ] || fail "served by $(jq -c .generations <<<"$out")"
[ "$(status_json | jq '.generations[0].connections')" -gt 0 ] || fail "no connection counted for generation 1"
ok "served over IPv6 by generation 1"
stop_grmd || fail "grmd did not exit cleanly"

# A TCP socket that does not listen (a .socket unit with Accept=yes hands over connections, not
# a listener) is refused at start, with the advice, and nothing is left running.
rc=0
python3 - "$GRMD" "$SOCK" "$GRM_ECHO" <<'PY' >"$WORK/refused.log" 2>&1 || rc=$?
import os, socket, sys
grmd, sock, echo = sys.argv[1:4]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 9301))
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="conn")
os.execv(grmd, [grmd, "--control", sock, "--", echo])
PY
[ "$rc" = 1 ] || fail "grmd with a TCP socket that does not listen exited $rc, expected 1"
grep -q "does not listen: use Accept=no" "$WORK/refused.log" || fail "no advice: $(cat "$WORK/refused.log")"
pgrep -f "$GRM_ECHO" >/dev/null && fail "an instance was started"
ok "a TCP socket that does not listen is refused with advice"
