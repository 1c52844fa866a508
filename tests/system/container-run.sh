#!/bin/bash
# Inside the container (ExecStart= of grm-systest@TEST.service): runs TEST.sh with a time limit
# and leaves in /run/grm-systest, bind-mounted from the host: test.log, rc, and the journal
# (journal.txt, and journal.export: `systemd-journal-remote -o FILE.journal journal.export` makes
# a journal file of it for `journalctl --file`).
set -uo pipefail
TEST=$1
RESULTS=/run/grm-systest
timeout -k 5 "${GRM_SYSTEST_TIMEOUT:-210}" bash "/usr/lib/grm-systest/$TEST.sh" 2>&1 |
        tee "$RESULTS/test.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && echo "FAIL: $TEST did not end within ${GRM_SYSTEST_TIMEOUT:-210}s" | tee -a "$RESULTS/test.log"
journalctl --no-pager -o short-monotonic >"$RESULTS/journal.txt" 2>&1
journalctl --no-pager -o export >"$RESULTS/journal.export" 2>/dev/null
echo "$rc" >"$RESULTS/rc"
exit "$rc"
