#!/usr/bin/env python3
# A stand-in for the parts of systemd that grmd's crash recovery relies on, so the recovery can
# be tested quickly outside a container (the nspawn system tests use real systemd):
#  - NOTIFY_SOCKET with FDSTORE=1/FDNAME= and FDSTOREREMOVE=1 (the file descriptor store),
#    keeping only sockets, as systemd 252 does (it drops BPF map fds and pidfds: grmd's vault
#    must not need them stored directly);
#  - Restart=on-failure: grmd killed or failed is started again with the stored fds as
#    LISTEN_FDS/LISTEN_FDNAMES;
#  - KillMode=process: the instances are left alone; as a child subreaper it reaps them.
# Usage: fdstore-supervisor.py STATEDIR -- GRMD ARGS...
# Writes STATEDIR/grmd.pid (current grmd pid), STATEDIR/starts (one line per start) and
# STATEDIR/ready (READY=1 count). Exits with grmd's status once grmd exits on its own with 0.
import array, ctypes, os, socket, stat, sys, time

state = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

notify_path = os.path.join(state, "notify")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
notify.settimeout(0.05)

store = []  # (name, fd)
ready = 0

def write(name, text, mode="w"):
    with open(os.path.join(state, name), mode) as f:
        f.write(text)

def spawn():
    names = [n for n, _ in store]
    fds = [fd for _, fd in store]
    pid = os.fork()
    if pid == 0:
        high = [os.dup(fd) for fd in fds]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i, inheritable=True)
        os.closerange(3 + len(fds), 4096)
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = notify_path
        if fds:
            env["LISTEN_FDS"] = str(len(fds))
            env["LISTEN_PID"] = str(os.getpid())
            env["LISTEN_FDNAMES"] = ":".join(names)
        os.execve(cmd[0], cmd, env)
    write("grmd.pid", str(pid))
    write("starts", "%d %s\n" % (pid, ",".join(names)), "a")
    return pid

def handle(data, fds):
    global ready, store
    fields = dict(l.split("=", 1) for l in data.decode(errors="replace").split("\n") if "=" in l)
    name = fields.get("FDNAME", "stored")
    if fields.get("FDSTOREREMOVE") == "1":
        for n, fd in [x for x in store if x[0] == name]:
            os.close(fd)
        store = [x for x in store if x[0] != name]
    if fields.get("FDSTORE") == "1":
        for fd in fds:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                store.append((name, fd))
            else:
                os.close(fd)
        fds = []
    if fields.get("READY") == "1":
        ready += 1
        write("ready", str(ready))
    for fd in fds:
        os.close(fd)

pid = spawn()
deadline = time.time() + 600
while time.time() < deadline:
    try:
        msg, anc, flags, _ = notify.recvmsg(65536, socket.CMSG_SPACE(253 * 4) + socket.CMSG_SPACE(12))
        fds = []
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[: len(data) - len(data) % 4])
                fds.extend(a)
        handle(msg, fds)
    except socket.timeout:
        pass
    while True:
        try:
            child, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            child = 0
        if child == 0:
            break
        if child == pid:
            code = os.waitstatus_to_exitcode(status)
            if code == 0:
                sys.exit(0)
            write("starts", "exit %d\n" % code, "a")
            time.sleep(0.1)  # RestartSec=100ms
            pid = spawn()
sys.exit(1)
