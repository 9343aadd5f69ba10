#!/usr/bin/python3
"""notify_listen.py - stand in for systemd's NOTIFY_SOCKET in the unit tests

usage: notify_listen.py SOCKET OUT [PROBE ARG...]

Binds a unix datagram socket at SOCKET (mode 0777, so that a daemon run as
another user can send to it) and writes every message a daemon sends
there (sd_notify's "READY=1", "STATUS=...") to OUT, one line per message
with its fields joined by " | ", flushed at once. When a message holds
READY=1 and a PROBE command was given, the probe runs before the next
message is read and its exit status and first output line follow as
"probe rc=N out=TEXT": the probe then shows what a client saw right after
the daemon said it was ready. Runs until SIGTERM or 120 seconds.
"""
import os
import signal
import socket
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        return 64
    path, out_path, probe = sys.argv[1], sys.argv[2], sys.argv[3:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o777)
    sock.settimeout(0.5)
    deadline = time.monotonic() + 120
    with open(out_path, "a", encoding="utf-8") as out:
        out.write("listening\n")
        out.flush()
        while time.monotonic() < deadline:
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            fields = data.decode("utf-8", "replace").strip("\n").split("\n")
            out.write("msg: " + " | ".join(fields) + "\n")
            out.flush()
            if probe and "READY=1" in fields:
                try:
                    p = subprocess.run(probe, capture_output=True, timeout=10, check=False)
                    if p.returncode == 0:
                        text = p.stdout.decode("utf-8", "replace").strip().split("\n")[0]
                    else:
                        text = p.stderr.decode("utf-8", "replace").strip().split("\n")[-1]
                    out.write("probe rc=%d out=%s\n" % (p.returncode, text))
                except subprocess.TimeoutExpired:
                    out.write("probe rc=timeout out=\n")
                out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
