#!/usr/bin/env python3
# smtp_batch.py - one SMTP transaction with its commands pipelined, for shell tests
#
# usage: smtp_batch.py PORT < COMMANDS
# After the banner and EHLO, the lines of standard input (MAIL, RCPTs) go
# to 127.0.0.1:PORT in one write, as an MTA that pipelines a transaction
# sends them; then DATA and, on 354, a short message. Prints how many of
# the batch's replies had each code, DATA's code and the final reply:
#   250=26 452=25 other=0 data=354 final=250 2.0.0 Ok: queued as ...
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline().decode("latin-1")
        if not line:
            return "CLOSED"
        if line[3:4] != "-":
            return line.rstrip("\r\n")
reply()
s.sendall(b"EHLO client.example.org\r\n")
reply()
cmds = [l.rstrip("\n").encode("latin-1") + b"\r\n" for l in sys.stdin if l.strip()]
s.sendall(b"".join(cmds))
codes = [reply()[:3] for _ in cmds]
s.sendall(b"DATA\r\n")
data = reply()[:3]
final = "-"
if data == "354":
    s.sendall(b"Subject: batch\r\n\r\nsent by smtp_batch.py\r\n.\r\n")
    final = reply()
n250, n452 = codes.count("250"), codes.count("452")
print("250=%d 452=%d other=%d data=%s final=%s" % (n250, n452, len(codes) - n250 - n452, data, final))
s.sendall(b"QUIT\r\n")
