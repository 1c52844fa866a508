# Sourced by the system tests, which run inside the container (grm-systest@TEST.service, through
# container-run.sh) against the units, config and binaries `meson install` put there: systemctl
# drives grm-echo.socket/grm-echo.service, grmctl talks to grmd at /run/grm-echo/grmd.sock,
# grm-load measures. A test exits 0 (pass) or 1 (fail, after printing the unit's state).
#
# /etc in the container is a fresh tmpfs: commands installed through Debian's alternatives
# (awk, editor, ...) do not exist there. Use bash, sed, grep, jq.
set -euo pipefail

UNIT=grm-echo.service
SOCKET_UNIT=grm-echo.socket
CONF=/etc/grm/grm-echo.conf
CTL=/run/grm-echo/grmd.sock
TARGET=127.0.0.1:9000
TARGET6='[::1]:9000'
# grmd's journal MESSAGE_IDs (its catalog; see src/daemon).
MESSAGE_RESTART_FAILED=9262e7c43df440eebce3ec6066059415
MESSAGE_STATE_RECOVERED=427b2480b0a54e4fbae35ece44cd05d1

# Capabilities grmd must be left with by CapabilityBoundingSet= in grm-echo.service:
# CAP_CHOWN(0) CAP_KILL(5) CAP_SETGID(6) CAP_SETUID(7) CAP_SETPCAP(8) CAP_NET_ADMIN(12)
# CAP_PERFMON(38) CAP_BPF(39).
GRMD_CAPS=000000c0000011e1

diagnose() {
        echo "--- state at failure"
        systemctl status "$UNIT" "$SOCKET_UNIT" --no-pager -l -n 0 2>&1 || true
        grmctl status 2>&1 || true
}

fail() {
        echo "FAIL: $*"
        diagnose
        exit 1
}

ok() {
        echo "ok: $*"
}

step() {
        echo "--- $*"
}

grmctl() {
        /usr/bin/grmctl -s "$CTL" "$@"
}

status_json() {
        grmctl status --json
}

# wait_for SECONDS JQ-FILTER: polls `grmctl status --json` until the filter yields true.
wait_for() {
        local secs=$1 filter=$2 i
        for i in $(seq $((secs * 20))); do
                if status_json 2>/dev/null | jq -e "$filter" >/dev/null 2>&1; then
                        return 0
                fi
                sleep 0.05
        done
        echo "timed out after ${secs}s waiting for: $filter"
        status_json 2>&1 || true
        return 1
}

# unit_prop UNIT PROPERTY: one property's value, as `systemctl show` has it.
unit_prop() {
        systemctl show -P "$2" "$1"
}

# wait_unit SECONDS UNIT ACTIVE-STATE
wait_unit() {
        local secs=$1 unit=$2 want=$3 i
        for i in $(seq $((secs * 20))); do
                [ "$(unit_prop "$unit" ActiveState)" = "$want" ] && return 0
                sleep 0.05
        done
        echo "timed out after ${secs}s waiting for $unit to be $want (is $(unit_prop "$unit" ActiveState))"
        return 1
}

# start_service: the socket, then the service (which gets the socket's fds, as on activation),
# and waits for generation 1.
start_service() {
        systemctl start "$SOCKET_UNIT" "$UNIT" || fail "systemctl start $SOCKET_UNIT $UNIT failed"
        wait_for 10 '.grmd.working == 1' || fail "generation 1 is not working"
}

# generation_field GEN FIELD: from `grmctl status --json`.
generation_field() {
        status_json | jq -r --argjson g "$1" ".generations[] | select(.generation == \$g) | .$2"
}

working_generation() {
        status_json | jq -r '.grmd.working'
}

# ports N: a range of N source ports never handed out before in this test. To grm, a reused
# address and port is the same flow, not a new one.
ports() {
        local first
        first=$(cat /run/grm-systest-next-port 2>/dev/null || echo 10000)
        echo $((first + $1)) >/run/grm-systest-next-port
        echo "$first-$((first + $1 - 1))"
}

# load FLOWS RATE SECONDS [GRM-LOAD-OPTIONS...]: grm-load --json against $TARGET; each new flow
# (including those --flow-lifetime brings) gets a fresh port. Its JSON report on stdout.
load() {
        local flows=$1 rate=$2 secs=$3 range
        shift 3
        range=$(ports 8000)
        grm-load --json -q -f "$flows" -r "$rate" -d "$secs" --ports "$range" "$@" "$TARGET"
}

# start_load FILE FLOWS RATE SECONDS [GRM-LOAD-OPTIONS...]: the same in the background, its pid
# in $LOAD_PID, its report in FILE and its errors in FILE.err. (The ports are taken here, before
# any probe can take them.)
start_load() {
        local out=$1 flows=$2 rate=$3 secs=$4 range
        shift 4
        range=$(ports 8000)
        grm-load --json -q -f "$flows" -r "$rate" -d "$secs" --ports "$range" "$@" "$TARGET" >"$out" 2>"$out.err" &
        LOAD_PID=$!
}

# wait_load FILE: waits for start_load's grm-load and checks its report (check_load), and that
# it exited 0.
wait_load() {
        local rc=0
        wait "$LOAD_PID" || rc=$?
        check_load "$1"
        [ "$rc" = 0 ] || fail "grm-load exited $rc: $(cat "$1.err")"
}

# probe GEN [TARGET]: 20 new flows; every one must be answered first by generation GEN.
probe() {
        local gen=$1 target=${2:-$TARGET} out
        out=$(grm-load --json -q -f 20 -r 400 -d 0.5 --ports "$(ports 20)" --expect-generation "$gen" "$target") ||
                fail "new flows to $target did not all land on generation $gen: $out"
}

# check_load FILE: grm-load's report shows nothing lost, moved, misrouted or malformed.
check_load() {
        local f=$1
        jq -c '{sent, answered, lost, moved, new_flows_on_old_generation, bad_replies, rate_pps}' "$f"
        [ "$(jq .sent "$f")" -gt 0 ] || fail "the load sent nothing"
        [ "$(jq .lost "$f")" = 0 ] || fail "packets lost"
        [ "$(jq .moved "$f")" = 0 ] || fail "flows moved"
        [ "$(jq .new_flows_on_old_generation "$f")" = 0 ] || fail "new flows served by an old generation"
        [ "$(jq .bad_replies "$f")" = 0 ] || fail "bad replies"
}

# set_conf KEY VALUE: sets KEY= in grmd's config (adds it to [Instance] if missing).
set_conf() {
        if grep -q "^$1=" "$CONF"; then
                sed -i "s|^$1=.*|$1=$2|" "$CONF"
        else
                sed -i "/^\[Instance\]/a $1=$2" "$CONF"
        fi
}

# cgroup_procs UNIT: the pids in the unit's control group (cgroup v2, or the hybrid layout's
# unified hierarchy); nothing if the group is gone.
cgroup_procs() {
        local cg base=/sys/fs/cgroup
        cg=$(unit_prop "$1" ControlGroup)
        [ -n "$cg" ] || return 0
        [ -f $base/cgroup.procs ] || base=/sys/fs/cgroup/unified
        cat "$base$cg/cgroup.procs" 2>/dev/null || true
}

# unit_journal: the unit's journal messages so far (journald is asked to write out what it has
# received first: it works asynchronously).
unit_journal() {
        journalctl --sync 2>/dev/null || true
        journalctl -u "$UNIT" -o cat --no-pager
}

# exec_reload_status: grmctl's exit status in the last ExecReload= run, from systemd.
exec_reload_status() {
        unit_prop "$UNIT" ExecReload | sed -n 's/.* status=\([0-9]*\).*/\1/p'
}

# check_message_id ID WHAT: the journal has an entry of grm-echo.service with MESSAGE_ID=ID.
# Enforced once grmd logs with MESSAGE_IDs at all (any entry of the unit has one); before that,
# it says so and passes.
check_message_id() {
        local id=$1 what=$2
        journalctl --sync 2>/dev/null || true
        if [ -z "$(journalctl -u "$UNIT" -o json --no-pager | jq -r 'select(.MESSAGE_ID != null and ._COMM == "grmd") | .MESSAGE_ID' | head -1)" ]; then
                echo "note: grmd logs no MESSAGE_ID yet; not checking for '$what' ($id)"
                return 0
        fi
        [ -n "$(journalctl -u "$UNIT" MESSAGE_ID="$id" -o cat --no-pager)" ] ||
                fail "no journal entry with MESSAGE_ID=$id ($what)"
        ok "journal has MESSAGE_ID=$id ($what): $(journalctl -u "$UNIT" MESSAGE_ID="$id" -o cat --no-pager | tail -1)"
}

# udp_inodes PID PORT: the inodes of the UDP sockets bound to PORT that PID holds, sorted, on
# one line (/proc/net/udp{,6} by local port, /proc/PID/fd by socket:[inode]).
udp_inodes() {
        local pid=$1 hex bound=" " _sl local _rest inode fd target out=()
        hex=$(printf '%04X' "$2")
        for table in /proc/net/udp /proc/net/udp6; do
                while read -r _sl local _ _ _ _ _ _ _ inode _rest; do
                        [ "${local##*:}" = "$hex" ] && bound+="$inode "
                done < <(tail -n +2 "$table")
        done
        for fd in /proc/"$pid"/fd/*; do
                target=$(readlink "$fd" 2>/dev/null) || continue
                case $target in socket:\[*\]) inode=${target#socket:[}; inode=${inode%]} ;; *) continue ;; esac
                case $bound in *" $inode "*) out+=("$inode") ;; esac
        done
        printf '%s\n' "${out[@]}" | sort -n | tr '\n' ' '
}

# kill_grmd: SIGKILL to grmd alone; waits for systemd's new grmd and its control socket.
kill_grmd() {
        local old i new
        old=$(unit_prop "$UNIT" MainPID)
        systemctl kill -s KILL --kill-whom=main "$UNIT" || fail "systemctl kill failed"
        for i in $(seq 200); do
                new=$(unit_prop "$UNIT" MainPID)
                if [ "$new" != 0 ] && [ "$new" != "$old" ] && [ "$(unit_prop "$UNIT" ActiveState)" = active ] &&
                        status_json >/dev/null 2>&1; then
                        echo "grmd $old killed; grmd $new running after $((i * 50)) ms"
                        return 0
                fi
                sleep 0.05
        done
        fail "no new grmd 10 s after killing $old (MainPID $(unit_prop "$UNIT" MainPID), $(unit_prop "$UNIT" ActiveState))"
}
