#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""An instance that misbehaves on purpose, then becomes a normal one.

Run by grmd as (part of) an instance's command:

    hostile-instance.py [ACTION...] -- COMMAND [ARG...]

performs each ACTION in the instance's own process (same pid, sockets at fd 3..., user,
capabilities, seccomp filter and cgroup as grmd set them up), then execs COMMAND (grm-echo),
which serves as usual. Results go to files the test reads. Actions:

  --notify-status N        send READY=1 plus an N-byte STATUS= (one datagram)
  --notify-bytes N         send one datagram of N bytes: READY=1 then padding
  --sockopts FILE          try to change the group's reuseport program through fd 3 (detach,
                           cBPF "ret #0", eBPF with an invalid fd) and to set up io_uring, by
                           the native and the 32-bit system call ABIs; write "NAME RESULT"
                           lines (RESULT: ok or the errno name)
  --grmctl GRMCTL SOCK FILE
                           run "GRMCTL -s SOCK status" and write its exit status
  --grmctl-setsid GRMCTL SOCK FILE
                           the same from a child in a session of its own (setsid)
  --escape FILE            fork a child that leaves the instance's session and process group
                           (setsid), keeps the sockets open and sleeps; write its pid
"""
import ctypes
import errno
import os
import socket
import struct
import subprocess
import sys

SO_ATTACH_REUSEPORT_CBPF = 51
SO_ATTACH_REUSEPORT_EBPF = 52
SO_DETACH_REUSEPORT_BPF = 68
SYS_io_uring_setup = 425
libc = ctypes.CDLL(None, use_errno=True)


def result(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def notify(payload):
    addr = os.environ["NOTIFY_SOCKET"]
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(payload, addr)
    s.close()


def cbpf_ret0():
    # struct sock_filter { u16 code; u8 jt, jf; u32 k; } = BPF_RET|BPF_K (0x06), k = 0
    insns = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    return struct.pack("HxxxxxxP", 1, ctypes.addressof(insns)), insns


def io_uring_setup():
    params = ctypes.create_string_buffer(120)
    fd = libc.syscall(SYS_io_uring_setup, 8, params)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "io_uring_setup")
    os.close(fd)


def try_sockopts(path):
    sock = socket.socket(fileno=os.dup(3))
    prog, keep = cbpf_ret0()
    lines = [
        "detach " + result(lambda: sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)),
        "cbpf " + result(lambda: sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, prog)),
        "ebpf " + result(lambda: sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF,
                                                 struct.pack("i", 999))),
        # An option the filter leaves alone: must still work.
        "rcvbuf " + result(lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)),
        "io_uring " + result(io_uring_setup),
        "uid %d" % os.getuid(),
    ]
    del keep
    sock.close()
    # The 32-bit ABI (int 0x80): setsockopt directly and through socketcall.
    helper = os.environ.get("GRM_SOCKOPT32")
    if helper:
        out = subprocess.run([helper], capture_output=True, text=True, pass_fds=(3,))
        lines += out.stdout.split("\n")
    with open(path, "w") as f:
        f.write("\n".join(line for line in lines if line) + "\n")


def main(argv):
    i = 0
    while i < len(argv) and argv[i] != "--":
        a = argv[i]
        if a == "--notify-status":
            n = int(argv[i + 1])
            notify(b"READY=1\nSTATUS=" + b"s" * n)
            i += 2
        elif a == "--notify-bytes":
            n = int(argv[i + 1])
            notify((b"READY=1\nX=" + b"y" * n)[:n])
            i += 2
        elif a == "--sockopts":
            try_sockopts(argv[i + 1])
            i += 2
        elif a in ("--grmctl", "--grmctl-setsid"):
            rc = subprocess.run([argv[i + 1], "-s", argv[i + 2], "status"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=(a == "--grmctl-setsid")).returncode
            with open(argv[i + 3], "w") as f:
                f.write("%d\n" % rc)
            i += 4
        elif a == "--escape":
            path = argv[i + 1]
            # The instance goes on only once the escaped child has written its pid: else an
            # instance that fails at once (--fail-start) can have its cgroup killed before the
            # child ran, and the test has no pid to look for.
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.setsid()
                if os.fork() == 0:  # and daemonise: its parent exits, it is reparented
                    with open(path + ".tmp", "w") as f:
                        f.write("%d\n" % os.getpid())
                    os.rename(path + ".tmp", path)
                    os.close(w)
                    os.execvp("sleep", ["sleep", "1000"])
                os._exit(0)
            os.close(w)
            os.read(r, 1)  # end of file: both children closed w (written, or died)
            os.close(r)
            os.waitpid(pid, 0)
            i += 2
        else:
            sys.exit("hostile-instance: unknown action " + a)
    cmd = argv[i + 1:]
    os.execvp(cmd[0], cmd)


main(sys.argv[1:])
