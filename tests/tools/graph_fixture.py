#!/usr/bin/env python3
"""graph_fixture.py - a small Microsoft Graph and token endpoint for rcptgate's tests

Plays, over HTTPS on 127.0.0.1, what rcptgate-syncd's graph source talks to:

  POST /TENANT/oauth2/v2.0/token     client credentials: a client secret or
                                     an RS256 JWT assertion (verified against
                                     the client certificate, x5t included)
  GET  /v1.0/users, /v1.0/groups, /v1.0/contacts   paged ($top, @odata.nextLink)
  GET  /v1.0/users/ID, /v1.0/groups/ID, /v1.0/contacts/ID
  GET  /v1.0/groups/ID/members       paged
  GET  /v1.0/users/delta, /v1.0/groups/delta, /v1.0/contacts/delta
                                     $deltatoken=latest, or a token of an
                                     earlier state: the difference, with
                                     @removed entries, and a new deltaLink

The directory is DIR/state.json ({"users": [...], "groups": [...], "contacts": [...]}, a group's
member ids in its "_members"), read again whenever the file changes; every
version read is kept, so a delta token names a version and a delta is the
difference between that version and the current one. --generate N serves N
synthetic users (and a few groups) instead, without holding them all.

Failure switches, DIR/control.json, read again whenever it changes (and then
the counters start over):
  page_size N          objects per page at most (default 100)
  throttle N           the first N Graph requests answer 429, Retry-After R
  retry_after R        (default 1)
  malformed_page K     page K (0-based) of /users is not JSON
  truncate_page K      page K of /users is cut short (Content-Length too big)
  error_page K         page K of /users answers 500, always
  hang_page K          page K of /users answers only after 30 s
  loop_page K          page K of /users has no entries and, as its
                       @odata.nextLink, the link it was fetched with
  loop_members         a group's members page keeps its entries and links to
                       itself as its @odata.nextLink
  members_forbidden ID /groups/ID/members answers 403 (hidden membership)
  contacts_forbidden   /contacts and /contacts/delta answer 403 (an application
                       without OrgContact.Read.All)
  delta_gone           delta tokens answer 410 Gone
  delta_error          delta tokens of /groups answer 500, always
  delta_partial        delta entries carry only their id and what changed
  removed_also_changed each object a delta removes comes first as a partial
                       change too (its re-read then answers 404), as Graph
                       may list one object more than once in a round
  changed_twice        each object a delta changes comes first with its id
                       alone (its re-read then answers 404 under lag_reads)
                       and later whole, as Graph may list one object more
                       than once in a round
  lag_reads N          the first N reads of one object (/users/ID, /groups/ID,
                       /groups/ID/members) answer 404, as a replica that
                       does not hold it yet
  token_max_uses N     a token is refused (401) after N requests
  token_ttl S          expires_in of new tokens (default 3600)

Each request is logged to --log as one line: "METHOD PATH STATUS [note] bytes=N".
Python 3 standard library only (http.server, ssl).
"""

import argparse
import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER_KEYS = ("id", "mail", "proxyAddresses", "accountEnabled", "userPrincipalName", "userType",
             "assignedLicenses", "onPremisesSamAccountName")
GROUP_KEYS = ("id", "mail", "proxyAddresses", "mailEnabled", "securityEnabled", "groupTypes")
CONTACT_KEYS = ("id", "mail", "proxyAddresses")
COLLECTIONS = {"users": (0, USER_KEYS), "groups": (1, GROUP_KEYS), "contacts": (4, CONTACT_KEYS)}


class Generated:
    """N synthetic users, made on demand."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0 or i >= self.n:
            raise IndexError(i)
        return {
            "id": "%08x-0000-4000-8000-%012x" % (i, i),
            "mail": "user%d@bench.example" % i,
            "proxyAddresses": ["SMTP:user%d@bench.example" % i, "smtp:u%d@alias.bench.example" % i,
                               "X500:/o=Bench/cn=u%d" % i],
            "accountEnabled": True,
            "userPrincipalName": "user%d@bench.example" % i,
            "userType": "Member",
            "assignedLicenses": [{"skuId": "x"}],
            "onPremisesSamAccountName": None,
        }


class State:
    """The directory's versions, and the switches."""

    def __init__(self, datadir, generate):
        self.datadir = datadir
        self.generate = generate
        self.lock = threading.Lock()
        self.versions = {}
        self.gen = 0
        self.stamp = None
        self.control = {}
        self.control_stamp = None
        self.counters = {}
        self.tokens = {}
        self.issued = 0
        if generate:
            users = Generated(generate)
            groups = []
            for g in range(10):
                groups.append({"id": "%08x-1111-4000-8000-%012x" % (g, g), "mail": "group%d@bench.example" % g,
                               "proxyAddresses": ["SMTP:group%d@bench.example" % g], "mailEnabled": True,
                               "securityEnabled": False, "groupTypes": [],
                               "_members": [users[j]["id"] for j in range(g * 100, min(generate, g * 100 + 100))]})
            self.gen = 1
            self.versions[1] = (users, groups, None, None, [])

    @staticmethod
    def _stamp(path):
        try:
            st = os.stat(path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def refresh(self):
        """Read state.json and control.json again where they changed."""
        with self.lock:
            cpath = os.path.join(self.datadir, "control.json")
            cs = self._stamp(cpath)
            if cs != self.control_stamp:
                self.control_stamp = cs
                self.counters = {}
                try:
                    with open(cpath) as f:
                        self.control = json.load(f)
                except (OSError, ValueError):
                    self.control = {}
            if self.generate:
                return
            spath = os.path.join(self.datadir, "state.json")
            ss = self._stamp(spath)
            if ss != self.stamp and ss is not None:
                with open(spath) as f:
                    data = json.load(f)
                self.stamp = ss
                self.gen += 1
                users = data.get("users", [])
                groups = data.get("groups", [])
                self.versions[self.gen] = (users, groups, {u["id"]: u for u in users}, {g["id"]: g for g in groups},
                                           data.get("contacts", []))

    def current(self):
        return self.gen, self.versions[self.gen]

    def count(self, name):
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1
            return self.counters[name]


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Fixture(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "graph-fixture/1"

    def log_message(self, fmt, *args):
        pass

    def note(self, status, extra="", size=0):
        with open(self.server.opts.log, "a") as f:
            f.write("%s %s %d%s bytes=%d\n" % (self.command, self.path, status, (" " + extra) if extra else "", size))

    def send_json(self, status, obj, headers=None, note=""):
        body = json.dumps(obj).encode()
        self.send_bytes(status, body, headers, note)

    def send_bytes(self, status, body, headers=None, note="", length=None):
        self.note(status, note, len(body))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if length is not None:
            self.wfile.flush()
            self.close_connection = True

    def error(self, status, code, message, headers=None):
        self.send_json(status, {"error": {"code": code, "message": message}}, headers)

    # ------------------------------------------------------------ token

    def do_POST(self):
        st = self.server.state
        st.refresh()
        opts = self.server.opts
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True)
        f = {k: v[0] for k, v in form.items()}
        if self.path != "/%s/oauth2/v2.0/token" % opts.tenant:
            return self.send_json(404, {"error": "invalid_tenant", "error_description": "no such tenant"})
        base = "https://127.0.0.1:%d" % self.server.server_port
        if f.get("grant_type") != "client_credentials" or f.get("client_id") != opts.client_id:
            return self.send_json(400, {"error": "unauthorized_client", "error_description": "bad client"})
        if f.get("scope") != base + "/.default":
            return self.send_json(400, {"error": "invalid_scope", "error_description": "scope %s" % f.get("scope")})
        how = None
        if "client_secret" in f:
            if opts.secret is None or f["client_secret"] != opts.secret:
                return self.send_json(401, {"error": "invalid_client", "error_description": "AADSTS7000215: bad secret"})
            how = "secret"
        elif f.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            why = self.check_assertion(f.get("client_assertion", ""), base + self.path)
            if why:
                return self.send_json(401, {"error": "invalid_client", "error_description": why}, note=why)
            how = "assertion"
        else:
            return self.send_json(400, {"error": "invalid_request", "error_description": "no credential"})
        with st.lock:
            st.issued += 1
            tok = "tok-%d-%s" % (st.issued, base64.b16encode(os.urandom(8)).decode())
            st.tokens[tok] = 0
        ttl = int(st.control.get("token_ttl", 3600))
        self.send_json(200, {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl,
                             "access_token": tok}, note="token " + how)

    def check_assertion(self, jwt, aud):
        """'' when the JWT is good, else why not."""
        opts = self.server.opts
        if not opts.client_cert:
            return "no certificate registered"
        try:
            h64, p64, s64 = jwt.split(".")
            header = json.loads(b64url_decode(h64))
            claims = json.loads(b64url_decode(p64))
            sig = b64url_decode(s64)
        except ValueError:
            return "malformed assertion"
        with open(opts.client_cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")
        if header.get("alg") != "RS256" or header.get("x5t") != x5t:
            return "AADSTS700027: header alg/x5t"
        now = time.time()
        if claims.get("aud") != aud or claims.get("iss") != opts.client_id or claims.get("sub") != opts.client_id:
            return "AADSTS700027: aud/iss/sub"
        if not (claims.get("nbf", now + 1) <= now + 5 and claims.get("exp", 0) > now):
            return "AADSTS700024: assertion not within its valid time range"
        if not claims.get("jti"):
            return "no jti"
        n, e = self.server.rsa
        k = (n.bit_length() + 7) // 8
        em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
        digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
        t = digest_info + hashlib.sha256((h64 + "." + p64).encode()).digest()
        want = b"\x00\x01" + b"\xff" * (k - 3 - len(t)) + b"\x00" + t
        if em != want:
            return "AADSTS700027: signature"
        return ""

    # ------------------------------------------------------------ Graph

    def do_GET(self):
        st = self.server.state
        st.refresh()
        ctl = st.control
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in st.tokens:
            return self.error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        tok = auth[7:]
        with st.lock:
            st.tokens[tok] += 1
            uses = st.tokens[tok]
        if "token_max_uses" in ctl and uses > int(ctl["token_max_uses"]):
            return self.error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if "throttle" in ctl and st.count("throttle") <= int(ctl["throttle"]):
            return self.error(429, "TooManyRequests", "Too many requests",
                              {"Retry-After": str(ctl.get("retry_after", 1))})
        if len(parts) < 2 or parts[0] != "v1.0" or parts[1] not in COLLECTIONS:
            return self.error(404, "Request_ResourceNotFound", "no such resource")
        what = parts[1]
        if what == "contacts" and ctl.get("contacts_forbidden"):
            return self.error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        gen, version = st.current()
        users, groups, uidx, gidx, contacts = version
        objs = version[COLLECTIONS[what][0]]
        keys = COLLECTIONS[what][1]
        size = min(int(q.get("$top", 100)), int(ctl.get("page_size", 100)))
        base = "https://127.0.0.1:%d" % self.server.server_port
        if len(parts) == 2:
            return self.listing(what, objs, keys, q, size, base)
        if parts[2] == "delta" and len(parts) == 3:
            return self.delta(what, q, size, base, gen)
        if "lag_reads" in ctl and st.count("lag_reads") <= int(ctl["lag_reads"]):
            return self.error(404, "Request_ResourceNotFound", "Resource '%s' does not exist" % parts[2])
        idx = uidx if what == "users" else gidx if what == "groups" else None
        obj = idx.get(parts[2]) if idx is not None else next((o for o in objs if o["id"] == parts[2]), None)
        if obj is None:
            return self.error(404, "Request_ResourceNotFound", "Resource '%s' does not exist" % parts[2])
        if len(parts) == 3:
            return self.send_json(200, self.public(obj, keys))
        if len(parts) == 4 and parts[3] == "members" and what == "groups":
            if ctl.get("members_forbidden") == parts[2]:
                return self.error(403, "Authorization_RequestDenied",
                                  "Insufficient privileges to complete the operation.")
            members = obj.get("_members", [])
            off = int(q.get("$skiptoken", 0))
            page = [{"@odata.type": "#microsoft.graph.user", "id": m} for m in members[off:off + size]]
            out = {"value": page}
            if ctl.get("loop_members") and page:
                out["@odata.nextLink"] = base + self.path
                return self.send_json(200, out, note="loop")
            if off + size < len(members):
                out["@odata.nextLink"] = "%s/v1.0/groups/%s/members?$select=id&$top=%s&$skiptoken=%d" % (
                    base, parts[2], q.get("$top", 100), off + size)
            return self.send_json(200, out)
        return self.error(404, "Request_ResourceNotFound", "no such resource")

    @staticmethod
    def public(obj, keys):
        return {k: obj.get(k) for k in keys}

    def listing(self, what, objs, keys, q, size, base):
        ctl = self.server.state.control
        off = int(q.get("$skiptoken", 0))
        pageno = off // size if size else 0
        out = {"@odata.context": "%s/v1.0/$metadata#%s" % (base, what),
               "value": [self.public(o, keys) for o in objs[off:off + size]]}
        if off + size < len(objs):
            out["@odata.nextLink"] = "%s/v1.0/%s?$select=%s&$top=%s&$skiptoken=%d" % (
                base, what, q.get("$select", ""), q.get("$top", 100), off + size)
        if what == "users":
            if ctl.get("hang_page") == pageno:
                time.sleep(30)
            if ctl.get("error_page") == pageno:
                return self.error(500, "generalException", "An error occurred")
            if ctl.get("loop_page") == pageno:
                out = {"@odata.context": out["@odata.context"], "value": [],
                       "@odata.nextLink": base + self.path}
                return self.send_json(200, out, note="loop")
            if ctl.get("malformed_page") == pageno:
                body = json.dumps(out).encode()
                return self.send_bytes(200, body[: len(body) // 2] + b"}]]", note="malformed")
            if ctl.get("truncate_page") == pageno:
                body = json.dumps(out).encode()
                return self.send_bytes(200, body[: len(body) // 2], note="truncated", length=len(body))
        self.send_json(200, out)

    def delta(self, what, q, size, base, gen):
        st = self.server.state
        ctl = st.control
        token = q.get("$deltatoken", "")
        link = "%s/v1.0/%s/delta?$deltatoken=%%s" % (base, what)
        if token == "latest":
            return self.send_json(200, {"value": [], "@odata.deltaLink": link % gen})
        if ctl.get("delta_error") and what == "groups":
            return self.error(500, "generalException", "An error occurred")
        if ctl.get("delta_gone") or not token.isdigit() or int(token) not in st.versions:
            return self.error(410, "syncStateNotFound", "The sync state is no longer available.")
        old = st.versions[int(token)]
        cur = st.versions[gen]
        i, keys = COLLECTIONS[what]
        before = {o["id"]: o for o in old[i]}
        after = {o["id"]: o for o in cur[i]}
        changes = []
        for oid, o in after.items():
            p = before.get(oid)
            if p == o:
                continue
            if ctl.get("delta_partial") and p is not None:
                entry = {"id": oid}
                for k in keys:
                    if p.get(k) != o.get(k):
                        entry[k] = o.get(k)
                if p.get("_members") != o.get("_members"):
                    entry["members@delta"] = [{"id": m} for m in o.get("_members", [])
                                              if m not in (p.get("_members") or [])]
                changes.append(entry)
            else:
                changes.append(self.public(o, keys))
        for oid in before:
            if oid not in after:
                changes.append({"id": oid, "@removed": {"reason": "changed"}})
                if ctl.get("removed_also_changed"):
                    changes.insert(0, {"id": oid, "mail": "changed@corp.example"})
        if ctl.get("changed_twice"):
            changes = [{"id": c["id"]} for c in changes
                       if "@removed" not in c and c["id"] in before] + changes
        off = int(q.get("$skiptoken", 0))
        out = {"value": changes[off:off + size]}
        if off + size < len(changes):
            out["@odata.nextLink"] = "%s/v1.0/%s/delta?$deltatoken=%s&$skiptoken=%d" % (base, what, token, off + size)
        else:
            out["@odata.deltaLink"] = link % gen
        self.send_json(200, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--tenant", default="test-tenant")
    ap.add_argument("--client-id", default="test-client")
    ap.add_argument("--secret")
    ap.add_argument("--client-cert")
    ap.add_argument("--generate", type=int, default=0)
    opts = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fixture)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opts.cert, opts.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.opts = opts
    server.state = State(opts.data, opts.generate)
    server.state.refresh()
    server.rsa = None
    if opts.client_cert:
        mod = subprocess.run(["openssl", "x509", "-noout", "-modulus", "-in", opts.client_cert],
                             check=True, capture_output=True, text=True).stdout.strip()
        server.rsa = (int(mod.split("=", 1)[1], 16), 65537)
    tmp = opts.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_port)
    os.rename(tmp, opts.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
