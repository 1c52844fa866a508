#!/bin/bash
# One of the six Debian DNS servers ($SERVER: knotd, nsd, unbound, kresd, pdns-recursor, dnsdist)
# under grm with the recipe of dns-lib.sh (docs/SERVERS.md): on port 53 (UDP and TCP) as its own
# unprivileged user without capabilities, its sockets through --intercept-bind, 3 restarts under
# dnsperf at 5,000 queries/s: every restart exits 0, every query is answered, each restart's
# generation answers afterwards, and a query over TCP is answered too. For unbound, also its
# remote-control port (not grm's) held by the old generation: the failed restart names it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dns-lib.sh"
: "${SERVER:?}" "${GRM_BIND_LIBRARY:?}"
export GRM_BIND_LIBRARY
command -v dnsperf >/dev/null || skip "dnsperf not installed (apt-get install dnsperf)"
case $SERVER in
knotd) bin=/usr/sbin/knotd pkg=knot ;;
nsd) bin=/usr/sbin/nsd pkg=nsd ;;
unbound) bin=/usr/sbin/unbound pkg=unbound ;;
kresd) bin=/usr/sbin/kresd pkg=knot-resolver ;;
pdns-recursor) bin=/usr/sbin/pdns_recursor pkg=pdns-recursor ;;
dnsdist) bin=/usr/bin/dnsdist pkg=dnsdist ;;
*) fail "unknown SERVER=$SERVER" ;;
esac
[ -x "$bin" ] || skip "$bin not installed (apt-get install $pkg)"
[ "$SERVER" = knotd ] || [ -x /usr/sbin/knotd ] || skip "/usr/sbin/knotd (the test's authoritative) not installed (apt-get install knot)"
RESTARTS=${RESTARTS:-3}
RATE=${RATE:-5000}

chmod 755 "$WORK"
DNS_DIR=$WORK/dns
DNS_PORT=53
DNS_BACKEND_PORT=5300
dns_setup "$SERVER"
dns_queries "$WORK/queries"
if [ "$DNS_NEEDS_BACKEND" = 1 ]; then
        dns_start_backend
        for i in $(seq 50); do
                ss -Huln "sport = :$DNS_BACKEND_PORT" | grep -q . && break
                sleep 0.1
        done
fi

cat "$DNS_DIR/grmd.conf"
start_grmd --config "$DNS_DIR/grmd.conf"
pid=$(generation_field 1 pid)
[ "$(stat -c %U /proc/"$pid")" = "$DNS_USER" ] || fail "$SERVER runs as $(stat -c %U /proc/"$pid")"
grep -q '^CapEff:\s*0000000000000000' /proc/"$pid"/status || fail "$SERVER has capabilities"
# It answers from generation 1's socket: the packets are counted there.
dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/queries" -n 1 -t 2 >"$WORK/probe.txt" 2>&1 || true
grep -q 'Queries lost: *0 ' "$WORK/probe.txt" || { cat "$WORK/probe.txt"; fail "$SERVER does not answer"; }
[ "$(generation_field 1 packets)" -ge 8 ] || fail "the answers did not come through generation 1's socket"
dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/queries" -n 1 -t 2 -m tcp >"$WORK/probe-tcp.txt" 2>&1 || true
grep -q 'Queries lost: *0 ' "$WORK/probe-tcp.txt" || { cat "$WORK/probe-tcp.txt"; fail "$SERVER does not answer over TCP"; }
ok "$SERVER (pid $pid, user $DNS_USER, no capabilities) answers on port 53 through generation 1's sockets, UDP and TCP"

# dnsperf runs until the restarts are done and a second more (SIGINT: it stops and reports; the
# queries in flight then are "interrupted", not lost), at most `limit` seconds: a fixed length
# could end before the last restart on a slow machine.
limit=$((RESTARTS * 10 + 10))
dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/queries" -l "$limit" -Q "$RATE" -c 4 -t 3 >"$WORK/perf.txt" 2>&1 &
perf=$!
sleep 1.5
codes=
for i in $(seq "$RESTARTS"); do
        rc=0
        out=$(grmctl restart --json) || rc=$?
        codes="$codes $rc"
        [ "$rc" = 0 ] || fail "restart $i exited $rc: $out"
        gen=$(jq -r .result.generation <<<"$out")
        sleep 1
        [ "$(generation_field "$gen" packets)" -gt 0 ] ||
                { status_json | jq -c .generations; cat "$WORK/perf.txt"; fail "generation $gen got no queries"; }
done
sleep 1
kill -INT "$perf" 2>/dev/null || true
wait "$perf" || true
grep -E 'Queries (sent|completed|lost|interrupted)|Run time' "$WORK/perf.txt"
sent=$(sed -n 's/^ *Queries sent: *\([0-9]*\).*/\1/p' "$WORK/perf.txt")
lost=$(sed -n 's/^ *Queries lost: *\([0-9]*\).*/\1/p' "$WORK/perf.txt")
run=$(sed -n 's/^ *Run time (s): *\([0-9]*\).*/\1/p' "$WORK/perf.txt")
[ -n "$sent" ] && [ -n "$run" ] && [ "$sent" -ge $((RATE * run * 8 / 10)) ] ||
        { cat "$WORK/perf.txt"; fail "dnsperf sent ${sent:-nothing} in ${run:-?} s"; }
[ "$lost" = 0 ] || fail "$lost of $sent queries lost"
status_json | jq -c '[.generations[] | {generation, state, packets}]'
ok "$SERVER: $RESTARTS restarts (exit codes$codes) under $RATE queries/s: $sent sent, 0 lost"

if [ "$SERVER" = unbound ]; then
        # unbound's remote-control on its default TCP port 127.0.0.1:8953, which grm does not
        # manage: the generation that first binds it holds it, so the next restart fails, and
        # the failure names the address (libgrm-bind.so reports the refused bind to grmd).
        sed -i 's/control-enable: no/control-enable: yes\n    control-use-cert: no/' "$DNS_DIR/unbound.conf"
        grmctl restart >/dev/null || fail "the restart enabling remote-control failed"
        expect_rc 5 grmctl restart
        cat "$WORK/out"
        grep -q "bind(tcp:127.0.0.1:8953) failed: Address already in use" "$WORK/out" ||
                fail "the failure does not name tcp:127.0.0.1:8953"
        ok "unbound's remote-control port held by the old generation: the restart fails and names tcp:127.0.0.1:8953"
fi
stop_grmd || fail "grmd exited non-zero"
