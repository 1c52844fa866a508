#!/bin/bash
# Bad input on the control and notify sockets gets an error (or is ignored and counted) and
# never hurts grmd: it keeps answering, keeps its generations, leaks no fd.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 -- "$GRM_ECHO" --idle-exit 0.5
fds_before=$(steady_fds "$GRMD_PID")

# Control socket: garbage, oversized, wrong version, unknown verb, silence, half-close.
python3 - "$SOCK" <<'PY'
import socket, sys, time
path = sys.argv[1]
def talk(payload, expect_reply=True):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(path)
    if payload is not None:
        s.send(payload)
    reply = b""
    try:
        reply = s.recv(70000)
    except socket.timeout:
        pass
    s.close()
    if expect_reply and not reply.startswith(b"error "):
        sys.exit("no error reply for %r: %r" % (payload[:40] if payload else payload, reply))
    return reply
talk(b"\x00\x01\x02garbage")
talk(b"request version=1 verb=restart")          # no final newline
talk(b"request version=1 verb=%zz\n")            # bad escape
talk(b"request version=2 verb=status\n")         # unsupported version
talk(b"request version=1 verb=explode\n")        # unknown verb
talk(b"request version=1 verb=restart timeout_usec=abc\n")
talk(b"x" * 5000)                                 # oversized
talk(b"request version=1 verb=status a=1 a=2\n") # duplicate key
# many connections at once that send nothing: refused beyond the limit, closed after a while
socks = []
for i in range(80):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    socks.append(s)
for s in socks:
    s.close()
PY
[ $? = 0 ] || fail "control socket misbehaved"
[ "$(status_json | jq .grmd.control_malformed)" -ge 7 ] || fail "malformed requests not counted"
ok "control socket rejects malformed requests"

# Notify socket: a process that is not part of any generation sends READY=1 and garbage.
pid1=$(generation_field 1 pid)
notify=$(tr '\0' '\n' </proc/"$pid1"/environ | sed -n 's/^NOTIFY_SOCKET=//p')
[ -n "$notify" ] || fail "no NOTIFY_SOCKET in the instance's environment"
python3 - "$notify" <<'PY'
import socket, sys
addr = sys.argv[1]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for msg in [b"READY=1", b"ERRNO=5\nREADY=1", b"\x00\x00", b"A" * 9000]:
    s.sendto(msg, addr)
PY
# The datagrams are queued when sendto() returns, but grmd reads them when it next runs.
wait_for 5 '.grmd.notify_ignored >= 4' || fail "foreign notify messages not counted: $(status_json | jq .grmd)"
grep -q "not part of any live generation" "$WORK/grmd.log" || fail "foreign notify not logged"
[ "$(status_json | jq .grmd.working)" = 1 ] || fail "working generation changed"
ok "notify socket ignores other pids"

# Still fine: a restart works, fds are where they were.
grmctl restart >/dev/null || fail "restart after hostile input failed"
# Generation 1 holds descriptors (its pidfd) until it has drained (idle 0.5 s) and exited.
wait_for 5 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 did not exit"
fds_after=$(steady_fds "$GRMD_PID")
[ "$fds_after" -le "$fds_before" ] || fail "fd leak: $fds_before -> $fds_after"
[ "$(send_udp 127.0.0.1 9000)" = 2 ] || fail "generation 2 not serving"
ok "grmd unaffected ($fds_before fds before, $fds_after after)"
stop_grmd || fail "grmd did not exit cleanly"
