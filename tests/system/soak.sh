#!/bin/bash
# The issue-3 proof, inside a booted systemd: under grm-load at 20,000 packets/s over 1,000
# concurrent flows (each replaced after 2 s), 10 `systemctl reload`s, 3 kill -9s of grmd and
# 2 `grmctl reexec`s, interleaved: 0 lost, 0 moved, new flows after every reload on the new
# generation. Its report is the table in docs/BENCHMARKS.md.
. "$(dirname "$0")/lib.sh"

start_service
set_conf DrainTimeoutSec 20
# Many reloads, not the settle time, are under test (integration/settle tests the default).
set_conf SettleSec 0.3

events="reload kill reload reexec reload reload kill reload reload reexec reload reload kill reload reload"
duration=$(( $(wc -w <<<"$events") * 2 + 4 ))
grm-load --json -q -f 1000 -r 20000 -d "$duration" -l 2 --ports "$(ports 30000)" "$TARGET" \
        >/run/soak.json 2>/run/soak.err &
LOAD_PID=$!
sleep 2

n_reload=0 n_kill=0 n_reexec=0
printf '%-4s %-8s %-10s %-10s %s\n' STEP EVENT GENERATION GRMD_PID NOTE
i=0
for e in $events; do
        i=$((i + 1))
        case $e in
        reload)
                systemctl reload "$UNIT" || fail "reload $n_reload exited $? (grmctl $(exec_reload_status))"
                n_reload=$((n_reload + 1))
                probe "$(working_generation)"
                note="20/20 new flows on the new generation" ;;
        kill)
                before=$(working_generation)
                kill_grmd >/dev/null
                wait_for 5 ".grmd.working == $before" || fail "working generation lost after kill -9"
                n_kill=$((n_kill + 1))
                note="instances kept; NRestarts=$(unit_prop "$UNIT" NRestarts)" ;;
        reexec)
                pid=$(unit_prop "$UNIT" MainPID)
                grmctl reexec >/dev/null || fail "grmctl reexec exited $?"
                [ "$(unit_prop "$UNIT" MainPID)" = "$pid" ] || fail "grmd pid changed on reexec"
                n_reexec=$((n_reexec + 1))
                note="same pid" ;;
        esac
        printf '%-4s %-8s %-10s %-10s %s\n' "$i" "$e" "$(working_generation)" "$(unit_prop "$UNIT" MainPID)" "$note"
        sleep 1.5
done

wait_load /run/soak.json
jq -r '"sent \(.sent)  answered \(.answered)  lost \(.lost)  flows \(.flows)  moved \(.moved)  new flows on an old generation \(.new_flows_on_old_generation)  rate \(.rate_pps|floor) pkt/s"' /run/soak.json
ok "$n_reload reloads, $n_kill kill -9s of grmd, $n_reexec reexecs under 20,000 packets/s over 1,000 flows: 0 lost, 0 moved"
