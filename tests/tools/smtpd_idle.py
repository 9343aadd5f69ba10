#!/usr/bin/env python3
# smtpd_idle.py - memory per idle rcptgate-smtpd session
#
# Opens N sessions to smtpd on 127.0.0.1:PORT, says EHLO on each, leaves
# them idle and prints how much smtpd's resident set grew per session
# (VmRSS of PID before and after, read from /proc). smtpd needs
# max_connections >= N and max_connections_per_client = 0, and this
# process N file descriptors.
# usage: smtpd_idle.py PORT N PID
import resource
import selectors
import socket
import sys
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def main():
    port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
    base = rss(pid)
    sel = selectors.DefaultSelector()
    socks, state = [], {}
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = [0, b""]
        socks.append(s)
    done, deadline = 0, time.time() + 120
    while done < n and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            st = state[s]
            st[1] += s.recv(4096)
            if st[0] == 0 and b"\r\n" in st[1]:
                st[0], st[1] = 1, b""
                s.sendall(b"EHLO client.example.net\r\n")
            elif st[0] == 1 and b"250 " in st[1]:
                st[0] = 2
                done += 1
                sel.unregister(s)
    time.sleep(3)
    after = rss(pid)
    print(f"sessions {done}/{n}: smtpd VmRSS {base} KiB -> {after} KiB, "
          f"{(after - base) * 1024 / max(done, 1):.0f} bytes per idle session")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
