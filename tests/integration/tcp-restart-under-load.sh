#!/bin/bash
# Restarts under TCP load: new connections per second and long-lived sessions through RESTARTS
# restarts, with grm-echo accepting in batches (--accept-every) so that every drain closes
# listeners with connections still queued: 0 refused, 0 reset, 0 timed out, 0 broken; what was
# queued is migrated (counted per generation and per verdict); every long-lived session follows
# the restarts (moved). With UDP_LISTEN set, a UDP group on the same port runs beside it in the
# same generations (LISTEN_FDS in the order given): 0 lost, 0 moved there too. With RUN_AS set the
# instances run as that user: their accepted connections are then that user's, which the next
# generation's listeners (grmd's, root's) must not conflict with when they bind.
. "$(dirname "$0")/lib.sh"

LISTEN=${LISTEN:-tcp:127.0.0.1:9000}
TARGET=${TARGET:-127.0.0.1:9000}
UDP_LISTEN=${UDP_LISTEN:-}
RESTARTS=${RESTARTS:-5}
RUN_AS=${RUN_AS:-}

args=()
[ -n "$UDP_LISTEN" ] && args+=(--listen "$UDP_LISTEN")
args+=(--listen "$LISTEN")
[ -n "$RUN_AS" ] && args+=(--user "$RUN_AS")
# --settle-sec 0: the old listeners close right after each flip, with connections queued on them,
# which is the migration under test (with a settle time they would have been accepted already).
start_grmd "${args[@]}" --settle-sec 0 --sockets-per-generation 2 --drain-timeout 20 --receive-buffer 4M \
        -- "$GRM_ECHO" --idle-exit 0.5 --accept-every 0.05

# The socket order of every instance is the order of the addresses (UDP first here).
pid=$(generation_field 1 pid)
fd_proto() {
        local inode
        inode=$(readlink "/proc/$pid/fd/$1" | sed 's/socket:\[\(.*\)\]/\1/')
        if cat /proc/net/udp /proc/net/udp6 | awk '{print $10}' | grep -qx "$inode"; then echo udp
        elif cat /proc/net/tcp /proc/net/tcp6 | awk '{print $10}' | grep -qx "$inode"; then echo tcp
        else echo "?"; fi
}
if [ -n "$UDP_LISTEN" ]; then
        order="$(fd_proto 3) $(fd_proto 4) $(fd_proto 5) $(fd_proto 6)"
        [ "$order" = "udp udp tcp tcp" ] || fail "instance fds 3-6 are $order, expected udp udp tcp tcp"
        "$GRM_LOAD" --json -f 200 -r 4000 -d $((RESTARTS * 2 + 2)) -l 1 --ports 20000-39999 "$TARGET" \
                >"$WORK/udp.json" 2>"$WORK/udp.err" &
        udp_load=$!
else
        order="$(fd_proto 3) $(fd_proto 4)"
        [ "$order" = "tcp tcp" ] || fail "instance fds 3-4 are $order, expected tcp tcp"
fi
ok "instance sockets in LISTEN_FDS order: $order"

"$GRM_LOAD" --tcp --json -r 500 -L 40 -i 0.1 -d $((RESTARTS * 2 + 2)) "$TARGET" >"$WORK/tcp.json" 2>"$WORK/tcp.err" &
tcp_load=$!
sleep 1
for i in $(seq "$RESTARTS"); do
        out=$(grmctl restart --json) || fail "restart $i: $out"
        gen=$(jq -r .result.generation <<<"$out")
        [ "$gen" = $((i + 1)) ] || fail "restart $i made generation $gen"
        sleep 2
done
rc=0
wait "$tcp_load" || rc=$?
jq -c . "$WORK/tcp.json"
[ "$(jq .connections.answered "$WORK/tcp.json")" -gt $((RESTARTS * 500)) ] || fail "too few connections answered"
for k in refused reset timed_out broken bad_replies; do
        [ "$(jq .connections.$k "$WORK/tcp.json")" = 0 ] || fail "new connections $k"
        [ "$(jq .long_lived.$k "$WORK/tcp.json")" = 0 ] || fail "long-lived requests $k"
done
[ "$(jq .long_lived.sessions_broken "$WORK/tcp.json")" = 0 ] || fail "long-lived sessions broken"
[ "$(jq .long_lived.moved "$WORK/tcp.json")" = 40 ] || fail "not every long-lived session followed the restarts"
[ "$rc" = 0 ] || fail "grm-load --tcp reported a problem (exit $rc)"

# Every restart closed listeners with connections queued: they were migrated, and the counters
# agree (per verdict = per generation).
status_json | jq -c '.counters | with_entries(select(.key | startswith("tcp_")))'
migrated=$(status_json | jq '.counters.tcp_migrated + .counters.tcp_migrated_syn_recv')
per_gen=$(status_json | jq '[.generations[].migrated] | add')
[ "$migrated" -gt 0 ] || fail "no connection was migrated"
[ "$migrated" = "$per_gen" ] || fail "migrations per verdict ($migrated) and per generation ($per_gen) differ"
[ "$(status_json | jq '.counters.tcp_migrate_kernel + .counters.tcp_error_select + .counters.tcp_no_listener')" = 0 ] ||
        fail "connections left to the kernel"
grep -q "TCPMigrateReqFailure" /proc/net/netstat
[ "$(awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) n[i] = $i; h = 1 } else for (i = 1; i <= NF; i++) if (n[i] == "TCPMigrateReqFailure") print $i }' /proc/net/netstat)" = 0 ] ||
        fail "the kernel failed to migrate a request"
grmctl metrics | grep '^grm_generation_tcp_migrated_total{generation="' >/dev/null || fail "metrics: per-generation migrations"
ok "$RESTARTS restarts under TCP load on $LISTEN: 0 refused, 0 reset, 0 broken; $migrated migrated"

if [ -n "$UDP_LISTEN" ]; then
        rc=0
        wait "$udp_load" || rc=$?
        jq -c '{sent, answered, lost, moved, new_flows_on_old_generation}' "$WORK/udp.json"
        [ "$rc" = 0 ] || fail "UDP load on the same port reported loss or moved flows"
        ok "UDP on the same port across the same restarts: 0 lost, 0 moved"
fi
stop_grmd || fail "grmd did not exit cleanly"
