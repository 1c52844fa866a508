# The six Debian DNS servers under grm: one recipe per server (its config, its command, its user,
# grmd's options), used by tests/integration/dns-server.sh and tools/bench/dns-restarts, and
# quoted in docs/SERVERS.md. Sourced after lib.sh (or by the benchmark on its own); needs
# $DNS_DIR (a directory the servers' users can read), $DNS_PORT (the service's port) and
# $DNS_BACKEND_PORT (the authoritative server the recursors and dnsdist ask).
#
# dns_setup SERVER: writes the server's files under $DNS_DIR, and grmd's config for it to
# $DNS_DIR/grmd.conf (the file docs/SERVERS.md shows), and sets
#   DNS_USER        the user its instances run as (Debian's package user)
#   DNS_CMD         the command grmd runs (an array)
#   DNS_NEEDS_BACKEND  1 if it forwards to the authoritative server on $DNS_BACKEND_PORT
# dns_start_backend: knotd serving the zone test. on 127.0.0.1:$DNS_BACKEND_PORT, outside grm.
# dns_queries FILE: a dnsperf query file for the zone.

DNS_SERVERS="knotd nsd unbound kresd pdns-recursor dnsdist"

dns_zone() {
        cat <<'ZONE'
$ORIGIN test.
$TTL 3600
@       IN SOA ns.test. admin.test. 1 3600 600 86400 3600
@       IN NS  ns.test.
ns      IN A   127.0.0.1
www     IN A   192.0.2.1
mail    IN A   192.0.2.2
ftp     IN A   192.0.2.3
api     IN AAAA 2001:db8::1
txt     IN TXT "grm"
ZONE
}

dns_queries() {
        printf '%s\n' 'www.test A' 'mail.test A' 'ftp.test A' 'api.test AAAA' 'txt.test TXT' 'test SOA' \
                'test NS' 'ns.test A' >"$1"
}

# A directory per generation for what a server refuses to share with its predecessor (a pid
# file, a control socket): the wrapper makes it, fills @RUN@ into the config, and execs the
# server (same pid, so grmd and the bind library see the server itself).
dns_wrapper() {
        local name=$1 conf_in=$2
        shift 2
        cat >"$DNS_DIR/$name-gen.sh" <<WRAP
#!/bin/sh
run=$DNS_DIR/$name-run/gen-\$GRM_GENERATION
mkdir -p "\$run" && sed "s|@RUN@|\$run|g" "$conf_in" >"\$run/conf" || exit 1
exec $*
WRAP
        chmod 755 "$DNS_DIR/$name-gen.sh"
        mkdir -p "$DNS_DIR/$name-run"
        chown "$DNS_USER" "$DNS_DIR/$name-run"
}

dns_setup() {
        local server=$1
        DNS_NEEDS_BACKEND=0
        DNS_STOP="TimeoutStopSec=10"
        # For servers that stop at once on SIGTERM, dropping the queries queued on their socket or
        # still out at a backend: a drain signal they ignore, and grm kills them 2 s after the
        # flip, long after their last answer (Dissector=none sends them nothing new).
        local let_it_be=$'KillSignal=SIGCONT\nTimeoutStopSec=2s'
        mkdir -p "$DNS_DIR"
        chmod 755 "$DNS_DIR"
        dns_zone >"$DNS_DIR/test.zone"
        chmod 644 "$DNS_DIR/test.zone"
        case "$server" in
        knotd)
                DNS_USER=knot
                cat >"$DNS_DIR/knot.conf.in" <<CONF
server:
    listen: 127.0.0.1@$DNS_PORT
    rundir: @RUN@
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: notice
database:
    storage: @RUN@/db
template:
  - id: default
    storage: $DNS_DIR
zone:
  - domain: test.
    file: test.zone
CONF
                dns_wrapper knotd "$DNS_DIR/knot.conf.in" /usr/sbin/knotd -c '"$run/conf"'
                DNS_CMD=("$DNS_DIR/knotd-gen.sh")
                ;;
        nsd)
                DNS_USER=nsd
                cat >"$DNS_DIR/nsd.conf.in" <<CONF
server:
    ip-address: 127.0.0.1@$DNS_PORT
    do-ip6: no
    server-count: 1
    reuseport: yes
    username: ""
    chroot: ""
    pidfile: ""
    zonesdir: "$DNS_DIR"
    zonelistfile: "@RUN@/zone.list"
    xfrdfile: "@RUN@/xfrd.state"
    xfrdir: "@RUN@"
    database: ""
    verbosity: 1
    # Response rate limiting (on by default) would drop answers to a load generator.
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: test.
    zonefile: test.zone
CONF
                dns_wrapper nsd "$DNS_DIR/nsd.conf.in" /usr/sbin/nsd -d -c '"$run/conf"'
                DNS_CMD=("$DNS_DIR/nsd-gen.sh")
                ;;
        unbound)
                DNS_USER=unbound
                DNS_NEEDS_BACKEND=1
                cat >"$DNS_DIR/unbound.conf" <<CONF
server:
    interface: 127.0.0.1@$DNS_PORT
    port: $DNS_PORT
    do-ip6: no
    do-daemonize: no
    use-systemd: yes
    username: ""
    chroot: ""
    pidfile: ""
    num-threads: 1
    so-reuseport: yes
    do-not-query-localhost: no
    module-config: "iterator"
    verbosity: 0
    use-syslog: no
    logfile: ""
stub-zone:
    name: "test."
    stub-addr: 127.0.0.1@$DNS_BACKEND_PORT
remote-control:
    control-enable: no
CONF
                DNS_CMD=(/usr/sbin/unbound -d -p -c "$DNS_DIR/unbound.conf")
                ;;
        kresd)
                DNS_USER=knot-resolver
                DNS_NEEDS_BACKEND=1
                mkdir -p "$DNS_DIR/kresd-cache"
                chown "$DNS_USER" "$DNS_DIR/kresd-cache"
                cat >"$DNS_DIR/kresd.conf" <<CONF
net.listen('127.0.0.1', $DNS_PORT, { kind = 'dns' })
net.ipv6 = false
trust_anchors.remove('.')
policy.add(policy.suffix(policy.STUB('127.0.0.1@$DNS_BACKEND_PORT'), { todname('test.') }))
cache.size = 10 * MB
CONF
                DNS_CMD=(/usr/sbin/kresd -n -q -c "$DNS_DIR/kresd.conf" "$DNS_DIR/kresd-cache")
                # Lost 4 of 115,000 queries in 10 restarts with SIGTERM.
                DNS_STOP=$let_it_be
                ;;
        pdns-recursor)
                DNS_USER=pdns
                DNS_NEEDS_BACKEND=1
                mkdir -p "$DNS_DIR/pdns"
                cat >"$DNS_DIR/pdns/recursor.conf" <<CONF
local-address=127.0.0.1
local-port=$DNS_PORT
forward-zones=test.=127.0.0.1:$DNS_BACKEND_PORT
dont-query=
daemon=no
write-pid=no
threads=1
pdns-distributes-queries=no
reuseport=yes
security-poll-suffix=
loglevel=3
quiet=yes
CONF
                chmod -R a+rX "$DNS_DIR/pdns"
                dns_wrapper pdns "$DNS_DIR/pdns/recursor.conf" /usr/sbin/pdns_recursor \
                        --config-dir="$DNS_DIR/pdns" --socket-dir='"$run"'
                DNS_CMD=("$DNS_DIR/pdns-gen.sh")
                # Lost 2 of 115,000 queries in 10 restarts with SIGTERM (it dies of it: status 143).
                DNS_STOP=$let_it_be
                ;;
        dnsdist)
                DNS_USER=_dnsdist
                DNS_NEEDS_BACKEND=1
                cat >"$DNS_DIR/dnsdist.conf" <<CONF
setLocal('127.0.0.1:$DNS_PORT', { reusePort = true })
newServer({ address = '127.0.0.1:$DNS_BACKEND_PORT', name = 'knotd' })
setSecurityPollSuffix('')
CONF
                chmod 644 "$DNS_DIR/dnsdist.conf"
                DNS_CMD=(/usr/bin/dnsdist --supervised --disable-syslog -C "$DNS_DIR/dnsdist.conf")
                # Lost 2 of 45,000 queries in 3 restarts with SIGTERM (those out at the backend).
                DNS_STOP=$let_it_be
                ;;
        *)
                echo "unknown DNS server $server" >&2
                return 1
                ;;
        esac
        chown -R "$DNS_USER" "$DNS_DIR"/*-run 2>/dev/null || true
        # grmd's side, the same for all six: it opens port 53 (UDP and TCP) itself, the server
        # binds it too and gets grm's sockets (InterceptBind=), and DNS needs no flow
        # stickiness (Dissector=none: every query to the newest generation).
        cat >"$DNS_DIR/grmd.conf" <<CONF
[Listen]
ListenDatagram=udp:127.0.0.1:$DNS_PORT
ListenStream=tcp:127.0.0.1:$DNS_PORT

[Steering]
Dissector=none

[Instance]
ExecStart=${DNS_CMD[*]}
User=$DNS_USER
InterceptBind=yes
TimeoutStartSec=20
$DNS_STOP
CONF
}

dns_start_backend() {
        local d=$DNS_DIR/backend
        mkdir -p "$d"
        dns_zone >"$d/test.zone"
        cat >"$d/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$DNS_BACKEND_PORT
    rundir: $d
    udp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: $d/db
template:
  - id: default
    storage: $d
zone:
  - domain: test.
    file: test.zone
CONF
        /usr/sbin/knotd -c "$d/knot.conf" >"$d/knotd.log" 2>&1 &
        DNS_BACKEND_PID=$!
}
