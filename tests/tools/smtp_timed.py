#!/usr/bin/env python3
# smtp_timed.py - one SMTP session with each reply timed, for shell tests
#
# usage: smtp_timed.py SRC PORT STEP...  (a session from SRC to 127.0.0.1:PORT)
# Steps: "C:line" send line + CRLF and read the reply; "S:bytes" send
# (\r \n \0 escapes) without reading; "R" read a reply; "TLS" start TLS.
# Prints one line per reply read: "<ms waited> <last line>", and the
# whole multi-line reply joined by " | " after a tab; "EOF" if closed.
# tests/lib/smtpd.sh wraps it as rc / rc_line / rc_ms / rc_all.
import socket, ssl, sys, time
src, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(src, 0))
f = s.makefile("rb")
def reply():
    t0 = time.monotonic()
    lines = []
    while True:
        try:
            l = f.readline()
        except (ConnectionError, socket.timeout):
            l = b""
        if not l:
            lines.append("EOF")
            break
        l = l.decode("latin-1").rstrip("\r\n")
        lines.append(l)
        if len(l) < 4 or l[3] != "-":
            break
    ms = int((time.monotonic() - t0) * 1000)
    print("%d %s\t%s" % (ms, lines[-1], " | ".join(lines)), flush=True)
    return lines
reply()
for step in sys.argv[3:]:
    try:
        if step == "R":
            reply()
        elif step == "TLS":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="mx.gateway.test")
            f = s.makefile("rb")
        elif step.startswith("C:"):
            s.sendall(step[2:].encode("latin-1") + b"\r\n")
            reply()
        elif step.startswith("S:"):
            s.sendall(step[2:].encode("latin-1").decode("unicode_escape").encode("latin-1"))
    except (ConnectionError, ssl.SSLError, OSError) as e:
        print("0 EOF\t%s" % e, flush=True)
        break
