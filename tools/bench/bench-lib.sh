# shellcheck shell=bash
# Shared by the benchmark scripts in tools/bench/ (sourced, not run). A benchmark script calls
# bench_enter "$@" first: as root it builds grm into BUILDDIR (default: build) and runs the script
# again in private network, PID and mount namespaces, so that it has its own loopback and every
# process it starts dies with it. Inside, $B is the build directory, $TOP the source tree and
# $WORK a scratch directory removed on exit.

bench_name=$(basename "$0")

bench_enter() {
        local builddir=${1:-build}

        if [ -n "${GRM_BENCH_IN_NS:-}" ]; then
                B=$builddir
                TOP=$(cd "$(dirname "$0")/../.." && pwd)
                ip link set lo up
                WORK=$(mktemp -d "/tmp/grm-bench-$bench_name.XXXXXX")
                trap bench_cleanup EXIT
                return 0
        fi

        if [ "$(id -u)" -ne 0 ]; then
                echo "$bench_name: run as root (it creates namespaces and loads BPF)." >&2
                exit 1
        fi
        TOP=$(cd "$(dirname "$0")/../.." && pwd)
        (cd "$TOP" && tools/build "$builddir" >/dev/null) || { echo "$bench_name: build failed" >&2; exit 1; }
        builddir=$(cd "$TOP" && cd "$builddir" && pwd)
        exec env GRM_BENCH_IN_NS=1 unshare --net --pid --fork --mount-proc -- "$0" "$builddir"
}

# Scripts add their own clean-up to this list of commands, run in reverse order on exit.
bench_cleanups=()

bench_cleanup() {
        local i
        for ((i = ${#bench_cleanups[@]} - 1; i >= 0; i--)); do
                eval "${bench_cleanups[$i]}" || true
        done
        rm -rf "$WORK"
        # Leaving the PID namespace kills whatever is left in it.
}

# bench_stop PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 5); reaps it.
bench_stop() {
        local pid=$1 secs=${2:-5} i
        [ -n "$pid" ] || return 0
        kill -TERM "$pid" 2>/dev/null || return 0
        for ((i = 0; i < secs * 20; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
}

# The machine, in one line.
bench_machine() {
        local model mem
        model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
        mem=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
        printf '%s vCPUs (%s), %s GiB, Linux %s, %s\n' "$(nproc)" "$model" "$mem" "$(uname -r)" \
                "$(. /etc/os-release && echo "$PRETTY_NAME")"
}

# This namespace's UDP counters (IPv4 and IPv6 together): "RcvbufErrors SndbufErrors InErrors".
bench_udp_errors() {
        awk '$1 == "Udp:" || $1 == "Udp6:" { if ($2 ~ /^[0-9]+$/) { for (i = 2; i <= NF; i++) v[k[i]] += $i } else { split($0, k) } }
             $1 ~ /^Udp6(RcvbufErrors|SndbufErrors|InErrors)$/ { v[substr($1, 5)] += $2 }
             END { printf "%d %d %d\n", v["RcvbufErrors"], v["SndbufErrors"], v["InErrors"] }' \
                /proc/net/snmp /proc/net/snmp6
}

# CPU time (user + system, in clock ticks) used by a process so far, 0 if it is gone.
bench_cpu_ticks() {
        awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# bench_percentile P FILE: the P-th percentile (nearest rank) of the numbers in FILE, one a line.
bench_percentile() {
        sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit }
                r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; print v[r] }'
}
