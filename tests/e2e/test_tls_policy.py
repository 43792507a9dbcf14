"""
Outbound TLS policy end to end (src/outbound: dane.c, mta_sts.c, tlsrpt.c) with the real server.

DNS: a DNSSEC-signed zone "dane.test." made in the test (ldns-keygen + ldns-signzone, ECDSA
P-256, NSEC), served by a local unbound as an authoritative `auth-zone:` (module "iterator";
it returns the RRSIGs). mailroute's libunbound forwards to it (dns.forward) and validates
itself with the zone's DS record as trust anchor (outbound.dnssec_trust_anchor), so the
"secure" flag comes from mailroute's own validator, not from a forwarder's AD bit.

MX hosts: asyncio receivers (outbound_helpers.Receiver with a STARTTLS-capable session) on
127.0.0.3X, one certificate for all of them issued by a test CA made here.
  good.dane.test    TLSA 3 1 1 of that certificate   → delivered over TLS (DANE)
  bad.dane.test     TLSA 3 1 1 of another key         → deferred, no MAIL in clear, TLS-RPT line
  stsok.dane.test   MTA-STS enforce, mx: mx.stsok...  → delivered over verified TLS
  stsbad.dane.test  MTA-STS enforce, mx: *.elsewhere  → deferred, the MX never contacted
  notls.dane.test   TLSA 3 1 1, the MX offers no STARTTLS → deferred, starttls-not-supported
  nodane.dane.test  signed, no TLSA (secure denial)   → normal policy: delivered (TLS may)
  ststest.dane.test MTA-STS testing, MX not in policy → delivered, the mismatch recorded
  stsnone.dane.test STS TXT record but the policy URL answers 404 → no policy: delivered,
                    sts-policy-fetch-error recorded
The MTA-STS policies are served over HTTPS by http.server on 127.0.0.1 (mta-sts.<domain>
resolves to 127.0.0.1 through the same DNS; outbound.mta_sts_port points at the server,
outbound.tls_ca_file trusts the test CA).
"""
import asyncio
import datetime
import glob
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import finish_server, free_port, send_plain, build_message, unique_token, wait_until
from outbound_helpers import Receiver, SUBJECT_RE, UNBOUND, free_udp_tcp_port

ALICE = "alice@example.test"

IP = {"good": "127.0.0.31", "bad": "127.0.0.32", "stsok": "127.0.0.33", "stsbad": "127.0.0.34",
      "notls": "127.0.0.35", "nodane": "127.0.0.36", "ststest": "127.0.0.37", "stsnone": "127.0.0.38"}
MX_NAMES = ["mx.%s.dane.test" % k for k in IP]

pytestmark = pytest.mark.skipif(shutil.which("ldns-signzone") is None, reason="ldnsutils not installed")


# --------------------------------------------------------------------------
# certificates
# --------------------------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(d):
    """Test CA, one MX certificate for every MX name, one HTTPS certificate for mta-sts.*."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("mailroute test CA")).issuer_name(_name("mailroute test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(names):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))
        return key, cert

    out = {}
    for label, (key, cert) in (("mx", leaf(MX_NAMES)),
                               ("https", leaf(["mta-sts.stsok.dane.test", "mta-sts.stsbad.dane.test",
                                               "mta-sts.ststest.dane.test", "mta-sts.stsnone.dane.test"]))):
        kp, cp = os.path.join(d, label + ".key"), os.path.join(d, label + ".pem")
        with open(kp, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        out[label] = (cp, kp, hashlib.sha256(spki).hexdigest())
    ca_path = os.path.join(d, "ca.pem")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    for p in glob.glob(os.path.join(d, "*")):
        os.chmod(p, 0o644)
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    out["ca"] = ca_path
    out["wrong_digest"] = hashlib.sha256(other).hexdigest()
    return out


# --------------------------------------------------------------------------
# DNSSEC-signed zone served by unbound (auth-zone)
# --------------------------------------------------------------------------

class SignedZone:
    def __init__(self, d, records):
        self.dir = d
        self.port = free_udp_tcp_port()
        self.records = records
        self.proc = None

    @property
    def forwarder(self):
        return "127.0.0.1@%d" % self.port

    def start(self):
        zone = os.path.join(self.dir, "dane.test.zone")
        with open(zone, "w") as f:
            f.write("$ORIGIN dane.test.\n$TTL 300\n"
                    "@ IN SOA ns.dane.test. admin.dane.test. 1 3600 600 86400 30\n"
                    "@ IN NS ns.dane.test.\nns IN A 127.0.0.1\n")
            f.write("\n".join(self.records) + "\n")

        def run(*args):
            p = subprocess.run(list(args), cwd=self.dir, capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, "%s: %s %s" % (args, p.stdout, p.stderr)
            return p.stdout.strip()
        ksk = run("ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "dane.test")
        zsk = run("ldns-keygen", "-a", "ECDSAP256SHA256", "dane.test")
        run("ldns-signzone", "-o", "dane.test.", zone, ksk, zsk)
        self.trust_anchor = os.path.join(self.dir, ksk + ".ds")
        os.chmod(self.trust_anchor, 0o644)
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "server:",
                "  interface: 127.0.0.1@%d" % self.port,
                "  port: %d" % self.port,
                "  do-ip6: no",
                '  chroot: ""', '  username: ""', '  pidfile: ""',
                '  directory: "%s"' % self.dir,
                '  logfile: "%s/unbound.log"' % self.dir,
                "  use-syslog: no", "  verbosity: 1", "  num-threads: 1", "  so-reuseport: no",
                '  module-config: "iterator"',
                "  access-control: 127.0.0.0/8 allow",
                '  local-zone: "test." nodefault',
                "auth-zone:",
                '  name: "dane.test."',
                '  zonefile: "%s.signed"' % zone,
                "  for-downstream: yes",
                "  for-upstream: yes",
                "remote-control:", "  control-enable: no", ""]))
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                assert self.proc.poll() is None, open(os.path.join(self.dir, "unbound.log")).read()
                time.sleep(0.05)
        raise AssertionError("unbound did not start")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# --------------------------------------------------------------------------
# a receiver that offers STARTTLS
# --------------------------------------------------------------------------

class TLSReceiver(Receiver):
    """Receiver (outbound_helpers) whose EHLO offers STARTTLS; records TLS use per message."""

    def __init__(self, host, port, cert, key, **kw):
        super().__init__(host, port, **kw)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.handshakes = 0

    async def _session(self, reader, writer, conn):
        async def send(line):
            writer.write((line + "\r\n").encode())
            await writer.drain()

        tls = False
        await send("220 %s ESMTP tls receiver" % self.name)
        sender, rcpts = None, []
        while True:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._log("cmd", ("tls " if tls else "clear ") + line)
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                caps = ["%s hello" % self.name, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"]
                if not tls:
                    caps.append("STARTTLS")
                writer.write("".join("250%s%s\r\n" % ("-" if i < len(caps) - 1 else " ", c)
                                     for i, c in enumerate(caps)).encode())
                await writer.drain()
            elif verb == "STARTTLS" and not tls:
                await send("220 2.0.0 go ahead")
                try:
                    await writer.start_tls(self.ctx)
                except (ssl.SSLError, OSError) as e:
                    self._log("tls-failed", str(e))
                    return
                tls = True
                with self.lock:
                    self.handshakes += 1
                sender, rcpts = None, []
            elif verb == "MAIL":
                sender, rcpts = line[10:], []
                await send("250 2.1.0 ok")
            elif verb == "RCPT":
                if sender is None:
                    await send("503 5.5.1 need MAIL")
                    continue
                rcpts.append(line[8:])
                await send("250 2.1.5 ok")
            elif verb == "DATA":
                await send("354 go ahead")
                lines = []
                while True:
                    l = await reader.readline()
                    if not l:
                        raise ConnectionError("closed in DATA")
                    if l == b".\r\n":
                        break
                    lines.append(l[1:] if l.startswith(b".") else l)
                data = b"".join(lines).decode("utf-8", "replace")
                m = SUBJECT_RE.search(data)
                msg = {"sender": sender, "rcpts": list(rcpts), "data": data, "conn": conn, "tls": tls,
                       "token": m.group(1) if m else None, "accepted": True, "reply": "250"}
                with self.lock:
                    self.messages.append(msg)
                    self.events.append(("message", msg))
                await send("250 2.0.0 ok")
                sender, rcpts = None, []
            elif verb in ("RSET", "NOOP"):
                sender, rcpts = None, []
                await send("250 2.0.0 ok")
            elif verb == "QUIT":
                await send("221 2.0.0 bye")
                return
            else:
                await send("502 5.5.2 unknown command")


# --------------------------------------------------------------------------
# MTA-STS policies over HTTPS
# --------------------------------------------------------------------------

POLICIES = {
    "mta-sts.stsok.dane.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.stsok.dane.test\r\nmax_age: 86400\r\n",
    "mta-sts.stsbad.dane.test": "version: STSv1\r\nmode: enforce\r\nmx: *.elsewhere.test\r\nmax_age: 86400\r\n",
    "mta-sts.ststest.dane.test": "version: STSv1\nmode: testing\nmx: mx.elsewhere.test\nmax_age: 600\n",
}


class PolicyServer:
    def __init__(self, cert, key):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = (self.headers.get("Host") or "").split(":")[0]
                outer.requests.append((host, self.path))
                body = POLICIES.get(host)
                if self.path != "/.well-known/mta-sts.txt" or body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

def pick_port():
    for _ in range(50):
        port = free_port()
        ok = True
        for ip in IP.values():
            s = socket.socket()
            try:
                s.bind((ip, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise RuntimeError("no common free port")


@pytest.fixture(scope="module")
def env(make_server):
    d = tempfile.mkdtemp(prefix="mr-tlspolicy-", dir="/tmp")
    os.chmod(d, 0o755)
    pki = make_pki(d)
    mx_port = pick_port()
    mx_digest = pki["mx"][2]
    records = []
    for k, ip in IP.items():
        records += ["%s IN MX 10 mx.%s" % (k, k), "mx.%s IN A %s" % (k, ip)]
    records += [
        "_%d._tcp.mx.good IN TLSA 3 1 1 %s" % (mx_port, mx_digest),
        "_%d._tcp.mx.bad IN TLSA 3 1 1 %s" % (mx_port, pki["wrong_digest"]),
        # a PKIX-EE record next to the mismatching one: unusable for SMTP, must not rescue it
        "_%d._tcp.mx.bad IN TLSA 1 1 1 %s" % (mx_port, mx_digest),
        "_%d._tcp.mx.notls IN TLSA 3 1 1 %s" % (mx_port, mx_digest),
        '_mta-sts.ststest IN TXT "v=STSv1; id=t1"',
        "mta-sts.ststest IN A 127.0.0.1",
        '_mta-sts.stsnone IN TXT "v=STSv1; id=n1"',
        "mta-sts.stsnone IN A 127.0.0.1",
        '_mta-sts.stsok IN TXT "v=STSv1; id=20261126a"',
        '_mta-sts.stsbad IN TXT "v=STSv1; id=20261126b"',
        "mta-sts.stsok IN A 127.0.0.1",
        "mta-sts.stsbad IN A 127.0.0.1",
    ]
    zone = SignedZone(d, records).start()
    https = PolicyServer(pki["https"][0], pki["https"][1])
    receivers = {k: (Receiver(ip, mx_port, name="mx.%s.dane.test" % k) if k == "notls" else
                     TLSReceiver(ip, mx_port, pki["mx"][0], pki["mx"][1], name="mx.%s.dane.test" % k)).start()
                 for k, ip in IP.items()}
    extra = "\n".join([
        'trusted_networks: ["127.0.0.0/8"]',
        "dns:",
        '  forward: ["%s"]' % zone.forwarder,
        "queue:",
        "  retry_min: 1",
        "  retry_max: 2",
        "outbound:",
        "  mx_port: %d" % mx_port,
        "  tls: may",
        "  connect_timeout: 3",
        "  command_timeout: 15",
        "  data_timeout: 30",
        "  dane: true",
        "  dnssec_trust_anchor: %s" % zone.trust_anchor,
        "  mta_sts: true",
        "  mta_sts_port: %d" % https.port,
        "  tls_ca_file: %s" % pki["ca"],
        ""])
    srv = make_server("tlspolicy", extra_config=extra)
    yield {"srv": srv, "rx": receivers, "https": https, "zone": zone, "pki": pki}
    finish_server(srv)
    for r in receivers.values():
        r.stop()
    https.stop()
    zone.stop()
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

QID_RE = re.compile(r"queued as (\S+)")


def send_one(srv, rcpt):
    token = unique_token("tlsp")
    code, text = send_plain(srv.ports["mx"], ALICE, [rcpt], build_message(token, sender=ALICE, to=rcpt))
    assert code == 250, (code, text)
    return token, QID_RE.search(text).group(1)


def queue_show(srv, qid):
    p = srv.cli("queue", "show", qid, check=False)
    return p.stdout.decode(errors="replace") if p.returncode == 0 else None


def log_lines(srv, needle):
    return "\n".join(l for l in srv.stderr_text().splitlines() if needle in l)


def wait_deferred(srv, qid, attempts=1, timeout=40):
    def check():
        s = queue_show(srv, qid)
        assert s is not None, "message %s left the queue:\n%s" % (qid, log_lines(srv, qid))
        n = max([int(x) for x in re.findall(r"attempts=(\d+)", s)] or [0])
        return s if n >= attempts else None
    show = wait_until(check, timeout, what="%d attempts of %s" % (attempts, qid))
    assert "status=pending" in show, show
    m = re.search(r"error=(.*)$", show, re.MULTILINE)
    assert m and re.search(r"\b4\.\d+\.\d+\b", m.group(1)), show
    return m.group(1)


def tlsrpt_records(srv):
    out = []
    for p in glob.glob(os.path.join(srv.data_dir, "queue", "tlsrpt", "*.jsonl")):
        with open(p) as f:
            out += [json.loads(l) for l in f if l.strip()]
    return out


def wait_token(rx, token, timeout=40):
    return wait_until(lambda: [m for m in rx.messages if m["token"] == token], timeout,
                      what="message %s at %s" % (token, rx.name))


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_dane_matching_tlsa_delivered_over_tls(env):
    srv, rx = env["srv"], env["rx"]["good"]
    token, qid = send_one(srv, "user@good.dane.test")
    msgs = wait_token(rx, token)
    assert msgs[0]["tls"], "delivered in clear"
    assert not [c for c in rx.commands() if c.startswith("clear MAIL")], rx.commands()
    lines = log_lines(srv, "event=dane")
    assert "host=mx.good.dane.test" in lines and "usable=1" in lines, lines
    assert "verified=dane" in log_lines(srv, "event=tls"), log_lines(srv, "event=tls")


def test_dane_mismatching_tlsa_deferred_never_clear(env):
    srv, rx = env["srv"], env["rx"]["bad"]
    token, qid = send_one(srv, "user@bad.dane.test")
    err = wait_deferred(srv, qid, attempts=2)
    assert "TLS handshake failed" in err, err
    cmds = rx.commands()
    assert any(c.startswith("clear STARTTLS") for c in cmds), cmds
    assert not [c for c in cmds if c.split(" ")[1].upper() in ("MAIL", "RCPT", "DATA")], cmds
    assert rx.messages == []
    recs = [r for r in tlsrpt_records(srv) if r.get("policy_domain") == "bad.dane.test"]
    assert recs, tlsrpt_records(srv)
    assert recs[0]["policy_type"] == "tlsa" and recs[0]["receiving_mx_hostname"] == "mx.bad.dane.test", recs
    assert recs[0]["result_type"] == "validation-failure", recs
    srv.cli("queue", "delete", qid)


def test_mta_sts_enforce_matching_mx_delivered(env):
    srv, rx = env["srv"], env["rx"]["stsok"]
    token, qid = send_one(srv, "user@stsok.dane.test")
    msgs = wait_token(rx, token)
    assert msgs[0]["tls"]
    assert ("mta-sts.stsok.dane.test", "/.well-known/mta-sts.txt") in env["https"].requests
    assert "verified=yes" in log_lines(srv, "host=mx.stsok.dane.test"), log_lines(srv, "stsok")
    cache = os.path.join(srv.data_dir, "queue", "mta-sts", "stsok.dane.test.policy")
    with open(cache) as f:
        text = f.read()
    assert text.startswith("mailroute-sts id=20261126a ") and "mode: enforce" in text, text


def test_mta_sts_enforce_excluded_mx_deferred(env):
    srv, rx = env["srv"], env["rx"]["stsbad"]
    token, qid = send_one(srv, "user@stsbad.dane.test")
    err = wait_deferred(srv, qid, attempts=1)
    assert "MTA-STS" in err, err
    assert rx.connections == 0, rx.commands()
    recs = [r for r in tlsrpt_records(srv) if r.get("policy_domain") == "stsbad.dane.test"]
    assert recs and recs[0]["policy_type"] == "sts", tlsrpt_records(srv)
    srv.cli("queue", "delete", qid)


def test_dane_host_without_starttls_deferred(env):
    srv, rx = env["srv"], env["rx"]["notls"]
    token, qid = send_one(srv, "user@notls.dane.test")
    err = wait_deferred(srv, qid, attempts=1)
    assert "TLS is required (DANE)" in err, err
    cmds = rx.commands()
    assert any(c.upper().startswith("EHLO") for c in cmds), cmds
    assert not [c for c in cmds if c.split(" ")[0].upper() in ("MAIL", "RCPT", "DATA")], cmds
    recs = [r for r in tlsrpt_records(srv) if r.get("policy_domain") == "notls.dane.test"]
    assert recs and recs[0]["result_type"] == "starttls-not-supported" and recs[0]["policy_type"] == "tlsa", recs
    srv.cli("queue", "delete", qid)


def test_signed_domain_without_tlsa_uses_normal_policy(env):
    srv, rx = env["srv"], env["rx"]["nodane"]
    token, qid = send_one(srv, "user@nodane.dane.test")
    msgs = wait_token(rx, token)
    assert msgs[0]["tls"]  # tls: may, offered
    assert "host=mx.nodane.dane.test" not in log_lines(srv, "event=dane")
    assert "verified=no" in log_lines(srv, "host=mx.nodane.dane.test")


def test_mta_sts_testing_mode_reports_only(env):
    srv, rx = env["srv"], env["rx"]["ststest"]
    token, qid = send_one(srv, "user@ststest.dane.test")
    wait_token(rx, token)
    recs = wait_until(lambda: [r for r in tlsrpt_records(srv) if r.get("policy_domain") == "ststest.dane.test"],
                      10, what="a TLS-RPT record for ststest")
    assert recs[0]["policy_type"] == "sts" and recs[0]["receiving_mx_hostname"] == "mx.ststest.dane.test", recs


def test_mta_sts_cached_policy_survives_restart(env):
    """After a restart the policy comes from <data_dir>/queue/mta-sts/ (same TXT id): the HTTPS
    host now answers 404, yet stsbad's enforce policy still keeps mail away from its MX."""
    srv, rx = env["srv"], env["rx"]["stsbad"]
    cache = os.path.join(srv.data_dir, "queue", "mta-sts", "stsbad.dane.test.policy")
    if not os.path.exists(cache):
        token, qid = send_one(srv, "user@stsbad.dane.test")
        wait_deferred(srv, qid, attempts=1)
        srv.cli("queue", "delete", qid)
    assert os.path.exists(cache)
    saved = POLICIES.pop("mta-sts.stsbad.dane.test")
    try:
        srv.stop()
        srv.start()
        before = len(env["https"].requests)
        token, qid = send_one(srv, "user@stsbad.dane.test")
        err = wait_deferred(srv, qid, attempts=1)
        assert "MTA-STS" in err, err
        assert rx.connections == 0, rx.commands()
        assert len(env["https"].requests) == before, "policy fetched again: %r" % env["https"].requests[before:]
        srv.cli("queue", "delete", qid)
    finally:
        POLICIES["mta-sts.stsbad.dane.test"] = saved


def test_mta_sts_fetch_failure_means_no_policy(env):
    srv, rx = env["srv"], env["rx"]["stsnone"]
    token, qid = send_one(srv, "user@stsnone.dane.test")
    wait_token(rx, token)
    assert ("mta-sts.stsnone.dane.test", "/.well-known/mta-sts.txt") in env["https"].requests
    recs = [r for r in tlsrpt_records(srv) if r.get("policy_domain") == "stsnone.dane.test"]
    assert recs and recs[0]["result_type"] == "sts-policy-fetch-error" and "404" in recs[0]["failure_reason"], recs
    assert not os.path.exists(os.path.join(srv.data_dir, "queue", "mta-sts", "stsnone.dane.test.policy"))
