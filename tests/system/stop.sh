#!/bin/bash
# d. `systemctl stop grm-echo.service` with two generations: generation 1 draining under load,
# generation 2 working and ignoring the drain signal. grmd drains both: 1 answers its flows to
# the end and exits by itself, 2 is killed at DrainTimeoutSec=; grmd exits, and systemd finds the
# unit's control group empty (KillMode=process leaves that job to grmd) and the fd store empty.
# The socket stays; the next start begins afresh at generation 1.
#
# The load ends during the stop, before grmd exits: a datagram that finds no generation goes to
# the socket unit's socket and, as socket activation should, starts the service again.
. "$(dirname "$0")/lib.sh"

DRAIN=4
start_service
set_conf DrainTimeoutSec "$DRAIN"

step "generation 1 draining under load, generation 2 working and ignoring the drain signal"
start_load /run/load.json 20 400 3.5
sleep 0.5
set_conf ExecStart "/usr/bin/grm-echo --ignore-drain"
systemctl reload "$UNIT" || fail "reload exited $?"
[ "$(working_generation)" = 2 ] || fail "generation 2 is not working"
probe 2
pids="$(generation_field 1 pid) $(generation_field 2 pid)"
grmd_pid=$(unit_prop "$UNIT" MainPID)
grmctl status | sed -n '/^GEN/,/^$/p'
[ "$(generation_field 1 state)" = draining ] || fail "generation 1 is $(generation_field 1 state), not draining"
echo "unit processes: $(cgroup_procs "$UNIT" | tr '\n' ' ')"
# STATUS= (systemctl status) counts the drain down: the seconds left change while nothing else does.
status1=$(unit_prop "$UNIT" StatusText)
sleep 1.2
status2=$(unit_prop "$UNIT" StatusText)
echo "STATUS=$status1 -> $status2"
grep -Eq "gen 2 working \(pid [0-9]+\), gen 1 draining \(pid [0-9]+\) [0-9]+ s left" <<<"$status1" || fail "STATUS=$status1"
[ "$status1" != "$status2" ] || fail "STATUS= not kept current while generation 1 drains"

step "systemctl stop"
start=$(date +%s%N)
systemctl stop "$UNIT" || fail "systemctl stop exited $?"
ms=$((($(date +%s%N) - start) / 1000000))
echo "stopped in $ms ms (DrainTimeoutSec=$DRAIN)"
[ "$ms" -ge $((DRAIN * 1000 - 500)) ] || fail "stop took only $ms ms: generation 2 was not given its drain time"
[ "$ms" -lt $(((DRAIN + 3) * 1000)) ] || fail "stop took $ms ms with a ${DRAIN} s drain timeout"
[ "$(unit_prop "$UNIT" ActiveState)" = inactive ] || fail "$UNIT is $(unit_prop "$UNIT" ActiveState) after stop"
[ "$(unit_prop "$UNIT" Result)" = success ] || fail "$UNIT's result is $(unit_prop "$UNIT" Result)"
for p in $pids $grmd_pid; do
        if kill -0 "$p" 2>/dev/null; then
                tr '\0' ' ' <"/proc/$p/cmdline" || true
                fail "process $p still running after stop"
        fi
done
left=$(cgroup_procs "$UNIT")
[ -z "$left" ] || fail "processes left in $(unit_prop "$UNIT" ControlGroup): $left"
ok "grmd ($grmd_pid) and both instances ($pids) gone, control group empty"
wait_load /run/load.json
ok "generation 1 answered all its flows while draining"

step "the journal: 1 drained, 2 killed at the deadline, nothing left over"
unit_journal | grep -E 'after draining|drain deadline|All generations|Stopped' || true
grep -q "Generation 1 (pid [0-9]*) exited with status 0 after draining" <<<"$(unit_journal)" ||
        fail "generation 1 did not drain and exit by itself"
grep -q 'Generation 2 (pid [0-9]*) still running at its drain deadline' <<<"$(unit_journal)" ||
        fail "generation 2 was not killed at its drain deadline"
if unit_journal | grep -iE 'left-over|remains running|Killing process'; then
        fail "systemd found processes left over"
fi
ok "grmd stopped every generation itself"

step "the fd store is empty; the socket still listens"
n=$(unit_prop "$UNIT" NFileDescriptorStore)
[ "$n" = 0 ] || fail "NFileDescriptorStore=$n after stop"
[ "$(unit_prop "$SOCKET_UNIT" ActiveState)" = active ] || fail "$SOCKET_UNIT is $(unit_prop "$SOCKET_UNIT" ActiveState)"
ok "NFileDescriptorStore=0, $SOCKET_UNIT active"

step "started again, grmd begins afresh"
set_conf ExecStart "/usr/bin/grm-echo --idle-exit 1"
systemctl start "$UNIT" || fail "second start exited $?"
wait_for 10 '.grmd.working == 1' || fail "generation 1 is not working after the second start"
probe 1
ok "generation 1 working again"
