#!/usr/bin/env python3
# smtp_picky.py - a next hop that answers each recipient as its address says
#
# For smtpd_spool.sh: smtp-sink answers every RCPT alike, and the queue's
# mixed cases need one transaction where the next hop takes one recipient
# and defers another. This server answers RCPT TO:<x> with 450 when the
# local part starts with "defer", 550 when it starts with "refuse" (and
# 550 with no enhanced status code, as an old server might, when it starts
# with "bare"), 250 otherwise; everything else as a plain sink (DSN and PIPELINING are not
# offered). Each message it takes (the final dot) is appended to FILE as
# one line "MAIL <sender> RCPT <a>,<b> BYTES n"; it answers 250 to the
# dot. When a recipient it took starts with "slowdot", it first writes
# that line to FILE.hold and answers the dot only once the test has made
# FILE.go (which it then removes), or after 30 s (a next hop slow at
# the dot, for smtpd_spool.sh's flush race). Serves until killed, each
# connection in a thread of its own (a second client is not kept waiting
# behind a slow dot).
# usage: smtp_picky.py PORT FILE
import os
import socket
import sys
import threading
import time


def serve(conn, out):
    f = conn.makefile("rb")

    def say(text):
        conn.sendall(text.encode() + b"\r\n")

    say("220 picky.test ESMTP")
    sender, rcpts = None, []
    while True:
        line = f.readline()
        if not line:
            return
        cmd = line.decode("utf-8", "replace").rstrip("\r\n")
        verb = cmd[:4].upper()
        if verb in ("EHLO", "HELO"):
            say("250-picky.test\r\n250 8BITMIME" if verb == "EHLO" else "250 picky.test")
        elif verb == "MAIL":
            sender, rcpts = cmd[10:].split(" ")[0], []
            say("250 2.1.0 Ok")
        elif verb == "RCPT":
            addr = cmd[8:].split(" ")[0].strip("<>")
            if addr.startswith("defer"):
                say("450 4.2.0 <%s>: try later" % addr)
            elif addr.startswith("refuse"):
                say("550 5.1.1 <%s>: no such user here" % addr)
            elif addr.startswith("bare"):
                say("550 <%s>: no such user here" % addr)
            else:
                rcpts.append(addr)
                say("250 2.1.5 Ok")
        elif verb == "DATA":
            if not rcpts:
                say("503 5.5.1 Error: need RCPT command")
                continue
            say("354 go ahead")
            size = 0
            while True:
                data = f.readline()
                if not data:
                    return
                if data == b".\r\n":
                    break
                size += len(data)
            line = "MAIL %s RCPT %s BYTES %d\n" % (sender, ",".join(rcpts), size)
            if any(r.startswith("slowdot") for r in rcpts):
                with open(out + ".hold", "a") as o:
                    o.write(line)
                go = out + ".go"
                for _ in range(600):
                    if os.path.exists(go):
                        os.unlink(go)
                        break
                    time.sleep(0.05)
            with open(out, "a") as o:
                o.write(line)
            say("250 2.0.0 Ok: queued as PICKY")
            sender, rcpts = None, []
        elif verb == "QUIT":
            say("221 2.0.0 Bye")
            return
        elif verb == "RSET":
            sender, rcpts = None, []
            say("250 2.0.0 Ok")
        else:
            say("250 2.0.0 Ok")


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve_one, args=(conn, out), daemon=True).start()


def serve_one(conn, out):
    try:
        serve(conn, out)
    except OSError:
        pass
    finally:
        conn.close()


if __name__ == "__main__":
    main()
