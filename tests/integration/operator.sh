#!/bin/bash
# The operator surface around grmd: grmctl -u NAME finds a unit's grmd without -s (here without
# systemd, so through the fallback /run/NAME/grmd.sock; tests/system asks systemd), systemd's
# spelling of config keys takes effect, and grmd without CAP_BPF says so in one line.
. "$(dirname "$0")/lib.sh"

# A private /run (this test has its own mount namespace): no system bus, so grmctl falls back
# to the unit's name.
mount -t tmpfs tmpfs /run
mkdir -p /run/my-dns
SOCK=/run/my-dns/grmd.sock
write_conf() {
        cat >"$WORK/grmd.conf" <<CONF
[Listen]
ListenDatagram=udp:127.0.0.1:9000

[Instance]
ExecStart=$GRM_ECHO --idle-exit 0.2 $1
TimeoutStartSec=1s
TimeoutStopSec=4s
KillSignal=SIGUSR1
CONF
}
write_conf ""
start_grmd --config "$WORK/grmd.conf"
"$GRMCTL" -u my-dns status >/dev/null || fail "grmctl -u my-dns did not find /run/my-dns/grmd.sock"
"$GRMCTL" status -u my-dns.service --json | jq -e '.grmd.working == 1' >/dev/null ||
        fail "grmctl status -u my-dns.service"
"$GRMCTL" -u my-dns metrics | grep '^grm_working_generation 1$' >/dev/null || fail "grmctl -u my-dns metrics"
expect_rc 3 "$GRMCTL" -u other status
grep -q "/run/other/grmd.sock" "$WORK/out" || fail "unreachable unit not named: $(cat "$WORK/out")"
expect_rc 2 "$GRMCTL" -u my-dns.socket status
grep -q "invalid unit name" "$WORK/out" || fail "no reason for a .socket unit: $(cat "$WORK/out")"
expect_rc 2 "$GRMCTL" -u ../etc status
expect_rc 2 "$GRMCTL" -u my-dns -s "$SOCK" status
expect_rc 2 "$GRMCTL" status -s "$SOCK" -u my-dns
ok "grmctl -u resolves /run/NAME/grmd.sock; bad names and -u with -s are usage errors"

# systemd's spellings: KillSignal= is the drain signal (grm-echo does not handle SIGUSR1, so it
# dies of it; the next one is told to ignore it), TimeoutStopSec= the drain deadline, TimeoutStartSec= the start timeout.
write_conf "--drain-signal SIGUSR1 --ignore-drain"
expect_rc 0 "$GRMCTL" -u my-dns restart
wait_for 5 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 did not end"
grep -q "Generation 1 (pid [0-9]*) killed by signal SIGUSR1" "$WORK/grmd.log" ||
        fail "generation 1 did not get KillSignal=SIGUSR1"
expect_rc 0 "$GRMCTL" -u my-dns restart
deadline=$(generation_field 2 drain_deadline_usec)
[ "$deadline" -gt 3000000 ] && [ "$deadline" -le 4000000 ] || fail "drain deadline $deadline us, not TimeoutStopSec=4s"
write_conf "--start-delay 2"
expect_rc 6 "$GRMCTL" -u my-dns restart
[ "$(status_json | jq .grmd.working)" = 3 ] || fail "working generation changed"
ok "KillSignal=, TimeoutStopSec= (deadline in $deadline us), TimeoutStartSec= take effect"
stop_grmd || fail "grmd exited non-zero"

# No CAP_BPF (nor CAP_SYS_ADMIN): one line naming the capability, exit 1, no libbpf noise.
rc=0
setpriv --inh-caps=-all --bounding-set=-bpf,-sys_admin "$GRMD" --listen udp:127.0.0.1:9001 \
        --control "$WORK/nocap.sock" -- "$GRM_ECHO" >"$WORK/nocap.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/nocap.log"; fail "grmd without CAP_BPF exited $rc"; }
[ "$(wc -l <"$WORK/nocap.log")" = 1 ] || { cat "$WORK/nocap.log"; fail "more than one line without CAP_BPF"; }
grep -q "Missing capability CAP_BPF" "$WORK/nocap.log" || { cat "$WORK/nocap.log"; fail "CAP_BPF not named"; }
# CAP_BPF alone is enough to load (the instance then needs CAP_SETPCAP, which is another matter).
# (until it says so, up to 10 s: a sanitized grmd takes a while to load its programs)
setpriv --inh-caps=-all --bounding-set=-all,+bpf "$GRMD" --listen udp:127.0.0.1:9001 \
        --control "$WORK/bpfonly.sock" -- "$GRM_ECHO" >"$WORK/bpfonly.log" 2>&1 &
bpfonly=$!
for _ in $(seq 200); do
        grep -q "Steering udp:127.0.0.1:9001" "$WORK/bpfonly.log" && break
        kill -0 "$bpfonly" 2>/dev/null || break
        sleep 0.05
done
kill -KILL "$bpfonly" 2>/dev/null || true
wait "$bpfonly" 2>/dev/null || true
grep -q "Steering udp:127.0.0.1:9001" "$WORK/bpfonly.log" || { cat "$WORK/bpfonly.log"; fail "CAP_BPF alone did not load"; }
ok "without CAP_BPF: $(cat "$WORK/nocap.log")"
