#!/bin/bash
# grmd checks with the socket census that each new generation socket joined grm's reuseport
# group (group_open_socket()): a connected socket on the address that kept SO_REUSEPORT (a
# per-client server without ConnectPerClient=) would make it join a new group around that socket,
# without grm's program (IPv4, Linux 6.18). While such a socket is the newest on the port, a
# restart fails and says why, and the working generation keeps serving, steered; once it is gone
# (or its SO_REUSEPORT cleared, as libgrm-bind.so does) restarts work again.
. "$(dirname "$0")/lib.sh"

start_grmd --listen udp:127.0.0.1:9000 -- "$GRM_ECHO"
[ "$(status_json | jq -r .grmd.census)" = active ] || fail "census not active: $(status_json | jq .grmd)"

# A root process's per-client socket, connected, SO_REUSEPORT kept; it waits on a pipe.
mkfifo "$WORK/hold"
python3 - "$WORK/hold" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 9000))
s.connect(("127.0.0.1", 5555))
with open(sys.argv[1], "w") as f:
    f.write("bound\n")
with open(sys.argv[1]) as f:
    f.readline()
PY
holder=$!
read -r _ <"$WORK/hold"

expect_rc 1 grmctl restart
grep -q "could not start a new instance: each new socket on udp:127.0.0.1:9000 joined a reuseport group that is not grm's" \
        "$WORK/out" || fail "restart output: $(cat "$WORK/out")"
grep -q "Failed to open socket for generation 2 on udp:127.0.0.1:9000: each new socket joined a reuseport group that is not grm's (a process keeps connected sockets with SO_REUSEPORT on the address" \
        "$WORK/grmd.log" || fail "no explanation in grmd's log: $(tail -5 "$WORK/grmd.log")"
[ "$(status_json | jq .grmd.working)" = 1 ] || fail "generation 1 no longer works"
[ "$(send_udp 127.0.0.1 9000)" = 1 ] || fail "generation 1 does not serve"
ok "a connected socket that kept SO_REUSEPORT: the restart fails with the reason, generation 1 serves"

echo done >"$WORK/hold"
wait "$holder"
expect_rc 0 grmctl restart
[ "$(send_udp 127.0.0.1 9000)" = 3 ] || fail "the next generation (3) does not serve"
ok "once it is gone, restarts work again"
stop_grmd || fail "grmd did not exit cleanly"
