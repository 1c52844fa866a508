#!/bin/bash
# Every generation in a cgroup of its own, under systemd with Delegate=yes (issue 8, item 3):
# instances that start a child which leaves their session (setsid) and keeps the group's socket
# open; nothing of a generation runs after its drain deadline, after a failed start, or after
# `systemctl stop`, and its cgroup (gen-N in the unit's cgroup) is removed.
. "$(dirname "$0")/lib.sh"

# The escape: a child in a session of its own that holds the instance's fds and sleeps.
cat >/run/grm-escape.sh <<'SH'
#!/bin/sh
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
exec "$@"
SH
chmod 0755 /run/grm-escape.sh
escaped() { pgrep -x -f 'sleep 1000' | paste -sd ' ' || true; }
n_escaped() { pgrep -c -x -f 'sleep 1000' || true; }
wait_escaped() {
        local want=$1 i
        for i in $(seq 100); do
                [ "$(n_escaped)" = "$want" ] && return 0
                sleep 0.05
        done
        fail "$(n_escaped) escaped children running, expected $want: $(escaped)"
}

set_conf DrainTimeoutSec 2
set_conf ExecStart "/run/grm-escape.sh /usr/bin/grm-echo --ignore-drain"
start_service
unit_cg=$(unit_prop "$UNIT" ControlGroup)
base=/sys/fs/cgroup
[ -f $base/cgroup.procs ] || base=/sys/fs/cgroup/unified
[ "$(status_json | jq -r .grmd.isolation)" = cgroup ] || fail "generations not in cgroups: $(status_json | jq -c .grmd)"
[ "$(status_json | jq -r .grmd.cgroup)" = "$unit_cg" ] || fail "base cgroup is $(status_json | jq -r .grmd.cgroup), not $unit_cg"
wait_escaped 1
esc=$(escaped)
pid1=$(generation_field 1 pid)
[ "$(ps -o sid= -p $esc | tr -d ' ')" != "$pid1" ] || fail "the child did not leave the instance's session"
grep -qx "$esc" "$base$unit_cg/gen-1/cgroup.procs" || fail "escaped child $esc not in $unit_cg/gen-1"
ok "generation 1 in $unit_cg/gen-1 with its escaped child $esc"

step "drain deadline, under load"
# Flows last 0.5 s (then new ones replace them): none that generation 1 owns is still alive at
# its deadline, 2 s after the reload, so the kill moves no flow.
start_load /run/load.json 50 1000 4 --flow-lifetime 0.5
sleep 0.5
set_conf ExecStart "/usr/bin/grm-echo --idle-exit 1"
systemctl reload "$UNIT" || fail "reload exited $?"
wait_for 10 '.generations[] | select(.generation == 1) | .state == "exited"' || fail "generation 1 not killed"
wait_escaped 0
# grmd removes an emptied cgroup at its next poll (20 ms), after the kill.
for i in $(seq 100); do [ -e "$base$unit_cg/gen-1" ] || break; sleep 0.05; done
[ ! -e "$base$unit_cg/gen-1" ] || fail "gen-1 not removed"
wait_load /run/load.json
ok "generation 1 and its escaped child gone at the deadline, gen-1 removed, $(generation_field 1 cpu_usec) us CPU"

step "failed start"
set_conf ExecStart "/run/grm-escape.sh /usr/bin/grm-echo --start-delay 1 --fail-start"
systemctl reload "$UNIT" &
reload=$!
wait_escaped 1
rc=0
wait $reload || rc=$?
[ "$rc" != 0 ] || fail "the reload of an instance that fails succeeded"
wait_escaped 0
for i in $(seq 100); do [ -e "$base$unit_cg/gen-3" ] || break; sleep 0.05; done
[ ! -e "$base$unit_cg/gen-3" ] || fail "gen-3 not removed"
probe 2
ok "failed start: escaped child gone, gen-3 removed, generation 2 serving"

step "systemctl stop"
set_conf ExecStart "/run/grm-escape.sh /usr/bin/grm-echo --idle-exit 1"
systemctl reload "$UNIT" || fail "reload exited $?"
wait_escaped 1
systemctl stop "$UNIT" || fail "systemctl stop exited $?"
wait_escaped 0
left=$(cgroup_procs "$UNIT")
[ -z "$left" ] || fail "processes left in $unit_cg: $left"
[ -z "$(find "$base$unit_cg" -mindepth 1 -type d 2>/dev/null)" ] || fail "cgroups left: $(find "$base$unit_cg" -mindepth 1 -type d)"
if unit_journal | grep -iE 'left-over|remains running'; then
        fail "systemd found processes left over"
fi
ok "stop: nothing of any generation runs, no cgroup left"
