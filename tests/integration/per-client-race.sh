#!/bin/bash
# The race libgrm-bind.so's shared lock closes (issue 12): per-client sockets bound by one process
# while another process's per-client socket is connected but still has SO_REUSEPORT would land in
# a reuseport group without grm's program, and take datagrams of other clients. per-client-race
# forks 2 workers that make per-client sockets as fast as they can for 3 s, each sending a probe
# to the service address right after its bind; grm's program sends every probe to the
# generation's socket, so all must arrive there: misdelivered=0 (per-client-race counts until
# every probe a worker sent has arrived, for at most 5 s after they exit). The control run is the same
# server without the lock (GRM_BIND_LOCK removed from its environment): it shows what the lock
# prevents, printed, not asserted (how often two processes meet in that microsecond varies).
. "$(dirname "$0")/lib.sh"

# UdpRcvbufErrors of this test's network namespace: a probe the generation's socket had no room for
# is not a misdelivered one.
rcvbuf_errors() {
        awk '/^Udp:/ { if (!n) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; n = 1 } else print $c }' /proc/net/snmp
}

race() { # label, ExecStart prefix...
        local label=$1
        shift
        local drops
        drops=$(rcvbuf_errors)
        start_grmd --listen udp:127.0.0.1:9000 --receive-buffer 8M --connect-per-client ${USER_OPT:-} -- "$@" "$PER_CLIENT_RACE" 2 3
        for _ in $(seq 150); do
                grep -q '^sent=' "$WORK/grmd.log" && break
                sleep 0.1
        done
        line=$(grep '^sent=' "$WORK/grmd.log") || fail "$label: no result from per-client-race"
        drops=$(($(rcvbuf_errors) - drops))
        echo "$label: $line (receive buffer drops: $drops)"
        # what grm's program did with them, for a failure's message
        counters=$(status_json | jq -c '.counters | with_entries(select(.value > 0))')
        stop_grmd || fail "$label: grmd did not exit cleanly"
}

race "with the lock"
grep -q "without the shared lock" "$WORK/grmd.log" && fail "the instance did without the lock"
[ -f "$WORK/grmd.bind-lock" ] || fail "no lock file beside the control socket"
sent=$(sed -E 's/^sent=([0-9]+).*/\1/' <<<"$line")
misdelivered=$(sed -E 's/.*misdelivered=([0-9]+).*/\1/' <<<"$line")
[ "$sent" -ge 1000 ] || fail "only $sent per-client sockets made: the race was not exercised"
# At most 1 in 20,000 (and the contrast below is about 1 in 20): twice in CI runs here one probe of
# about 80,000 went astray with the lock held and no bind without it, and grm's program had not
# seen it (the counters summed to the probes received), so it met a socket outside any group
# in the kernel's lookup, a window of the kernel's own (docs/ARCHITECTURE.md,
# "Connect-per-client servers"), not the bind-connect race the lock closes.
max_astray=$((sent / 20000))
[ "$misdelivered" -le "$max_astray" ] ||
        fail "$misdelivered probes reached per-client sockets outside grm's group (at most $max_astray); counters $counters"
ok "2 workers, $sent per-client binds with the shared lock: $misdelivered misdelivered (at most $max_astray)"

# Under User=: the instances open the lock file read-only as nobody (its directory must let them
# reach it, as /run/UNIT does), and the sockets are nobody's.
chmod 755 "$WORK"
USER_OPT="--user nobody" race "as nobody, with the lock"
grep -q "without the shared lock" "$WORK/grmd.log" && fail "the instances under User= did without the lock"
misdelivered=$(sed -E 's/.*misdelivered=([0-9]+).*/\1/' <<<"$line")
sent=$(sed -E 's/^sent=([0-9]+).*/\1/' <<<"$line")
max_astray=$((sent / 20000))
[ "$misdelivered" -le "$max_astray" ] ||
        fail "as nobody: $misdelivered probes reached per-client sockets outside grm's group (at most $max_astray); counters $counters"
ok "as nobody: $misdelivered misdelivered (at most $max_astray)"

race "control, without the lock" env -u GRM_BIND_LOCK
ok "control run printed"
