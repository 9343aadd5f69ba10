#!/usr/bin/env python3
# smtpchat.py - a raw-bytes SMTP client for rcptgate's shell tests
#
# Sends exactly the bytes a test asks for (bare CR/LF, NUL, pipelined
# commands, 10 MB lines) and prints every reply line it reads, one per
# line, then "CLOSED" if the server closed the connection. Steps:
#   >TEXT      send TEXT (Python escapes: \r \n \x00 ...); nothing added
#   <          read one whole reply (all lines of a multi-line one)
#   <N         read N replies
#   ~SECS      sleep
#   fill:N:C   send N bytes of the character C (in 64 KiB pieces)
#   tls        start TLS on the socket (no certificate check)
#   end        read until the server closes (or the timeout)
# usage: smtpchat.py [-b BINDADDR] [-t TIMEOUT] [-H HOST] PORT STEP...
import argparse
import codecs
import socket
import ssl
import sys
import time


class Chat:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def line(self):
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.closed = True
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        while True:
            line = self.line()
            if line is None:
                return False
            print(line, flush=True)
            if len(line) < 4 or line[3] != "-":
                return True

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-b", "--bind")
    ap.add_argument("-t", "--timeout", type=float, default=10)
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("port", type=int)
    ap.add_argument("steps", nargs="*")
    a = ap.parse_args()

    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.settimeout(a.timeout)
    if a.bind:
        sock.bind((a.bind, 0))
    sock.connect((a.host, a.port))
    chat = Chat(sock)
    try:
        for step in a.steps:
            if chat.closed:
                break
            if step.startswith(">"):
                chat.send(codecs.decode(step[1:], "unicode_escape").encode("latin-1"))
            elif step.startswith("<"):
                for _ in range(int(step[1:] or "1")):
                    if not chat.reply():
                        break
            elif step.startswith("~"):
                time.sleep(float(step[1:]))
            elif step.startswith("fill:"):
                _, n, ch = step.split(":", 2)
                n = int(n)
                piece = ch.encode("latin-1") * 65536
                while n > 0 and not chat.closed:
                    chat.send(piece[:min(n, len(piece))])
                    n -= min(n, len(piece))
            elif step == "tls":
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                chat.sock = ctx.wrap_socket(chat.sock, server_hostname="mx.gateway.test")
                chat.buf = b""
                print("TLS " + chat.sock.version(), flush=True)
            elif step == "end":
                while True:
                    line = chat.line()
                    if line is None:
                        break
                    print(line, flush=True)
            else:
                sys.exit("smtpchat: unknown step " + step)
    except socket.timeout:
        print("TIMEOUT", flush=True)
        return
    except ssl.SSLError as e:
        print("TLSERROR " + str(e), flush=True)
        return
    if chat.closed:
        print("CLOSED", flush=True)


if __name__ == "__main__":
    main()
