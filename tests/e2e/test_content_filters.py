"""
Content security and connection-time defences through the real server, with
the real peers (docs/filters.md):

  clamd      private clamd.conf and an offline .ndb with the EICAR string:
             EICAR -> 554 5.7.1, clean -> delivered, clamd stopped -> 451 (on_error tempfail)
  rspamd     private top-level config (normal worker only, no redis, DNS to a closed
             port) plus a multimap rule scoring Subject "RSPAMD-SPAM-TOKEN" 7 (add header):
             GTUBE -> 554, normal -> delivered, token -> delivered into Junk with X-Spam
  milter     tests/milter/test-milter (libmilter): X-Test-Milter on delivery, REJECTME -> 550,
             RCPT <blocked@...> -> 550 5.1.1, DISCARDME -> 250 and nothing delivered;
             a milter that is down with on_error accept is skipped
  DNSBL      a local unbound serving bl.test / dbl.test: a listed client gets a 554 greeting
             (then 503 until QUIT), a listed sender domain 554 at MAIL; action tag adds X-DNSBL
  greylist   delay 3 s: 451 4.7.1, early retry 451, retry after the delay 250 and delivered,
             then the network is pass-listed
  rate       connections, messages and recipients per IP, and messages per user: hit and
             recovered after the (small) window

Each peer is started once per module on free ports in its own process group and
stopped by PID (group) at the end. Client source addresses 127.0.x.y keep the
tests apart (limits and lists are per IP).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import struct
import tempfile
import threading
import time

import pytest

from conftest import (RawSMTP, build_message, data_payload, free_port, header_block, unique_token,
                      wait_until, USERS, IO_TIMEOUT)
from outbound_helpers import LocalUnbound

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
ALICE = "alice@example.test"
BOB = "bob@example.test"


def milter_bin():
    b = os.environ.get("MAILROUTE_BIN")
    d = os.path.dirname(os.path.abspath(b)) if b else os.path.join(REPO, "build")
    return os.path.join(d, "src", "lib-milter", "test-milter")


# --------------------------------------------------------------------------
# peers
# --------------------------------------------------------------------------

class Peer:
    """A helper daemon in its own process group, stopped by PID."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix="mr-e2e-%s-" % name, dir="/tmp")
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def spawn(self, argv):
        log = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()

    def wait_ready(self, probe, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if probe():
                return
            time.sleep(0.1)
        logs = ""
        for n in os.listdir(self.dir):
            if n.endswith(".log"):
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    logs += "== %s\n%s\n" % (n, f.read()[-1500:])
        self.stop()
        pytest.fail("%s did not start:\n%s" % (self.dir, logs))

    def ask(self, req, expect):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(req)
                data = b""
                while expect not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return expect in data
        except OSError:
            return False

    def stop(self):
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group (rspamd's workers) must be gone too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_clamd():
    p = Peer("clamd")
    db = os.path.join(p.dir, "db")
    os.mkdir(db)
    with open(os.path.join(db, "test.ndb"), "w") as f:
        f.write("Eicar-Test-Signature:0:*:%s\n" % EICAR.encode().hex())
    conf = os.path.join(p.dir, "clamd.conf")
    with open(conf, "w") as f:
        f.write("TCPSocket %d\nTCPAddr 127.0.0.1\nForeground yes\nDatabaseDirectory %s\n"
                "LogFile %s/clamd.log\nStreamMaxLength 10M\nMaxThreads 2\nBytecode no\n"
                % (p.port, db, p.dir))
    p.spawn(["/usr/sbin/clamd", "-c", conf])
    p.wait_ready(lambda: p.ask(b"zPING\0", b"PONG"), 60)
    return p


def start_rspamd():
    p = Peer("rspamd")
    db = os.path.join(p.dir, "db")
    os.mkdir(db)
    os.chmod(db, 0o777)
    local = os.path.join(p.dir, "local.d")
    os.mkdir(local)
    with open(os.path.join(p.dir, "spam.map"), "w") as f:
        f.write("/RSPAMD-SPAM-TOKEN/\n")
    with open(os.path.join(local, "multimap.conf"), "w") as f:
        f.write('MR_TEST_SPAM { type = "header"; header = "Subject"; regexp = true; '
                'map = "%s/spam.map"; score = 7.0; }\n' % p.dir)
    os.chmod(local, 0o755)
    conf = os.path.join(p.dir, "rspamd.conf")
    with open(conf, "w") as f:
        f.write('.include "$CONFDIR/common.conf"\n'
                'options {\n pidfile = "%s/rspamd.pid";\n .include "$CONFDIR/options.inc"\n'
                ' dns { nameserver = ["127.0.0.1:1"]; timeout = 0.2s; retransmits = 1; }\n}\n'
                'logging { type = "file"; filename = "%s/rspamd.log"; level = "notice"; }\n'
                'worker "normal" {\n bind_socket = "127.0.0.1:%d";\n'
                ' .include "$CONFDIR/worker-normal.inc"\n count = 1;\n}\n' % (p.dir, p.dir, p.port))
    var = ["--var", "LOCAL_CONFDIR=%s" % p.dir, "--var", "DBDIR=%s" % db, "--var", "RUNDIR=%s" % p.dir]
    if os.geteuid() == 0:
        argv = ["/usr/bin/rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", conf] + var
    else:
        argv = ["/usr/bin/rspamd", "-f", "-c", conf] + var
    p.spawn(argv)
    p.wait_ready(lambda: p.ask(b"GET /ping HTTP/1.0\r\n\r\n", b"pong"), 120)
    return p


def start_milter():
    p = Peer("milter")
    binary = milter_bin()
    if not os.access(binary, os.X_OK):
        pytest.fail("%s missing: build the test-milter target" % binary)
    p.spawn([binary, str(p.port), "plain"])

    def up():
        try:
            socket.create_connection(("127.0.0.1", p.port), timeout=1).close()
            return True
        except OSError:
            return False
    p.wait_ready(up, 20)
    return p


def closed_port():
    return free_port()


class FakeMilter:
    """A minimal milter (thread per connection): continues everything, except a client from
    127.0.5.x (554 at connect) and HELO evil.test (550 at HELO), with custom reply codes."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.stopped = False
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _recv(c, n):
        data = b""
        while len(data) < n:
            chunk = c.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    @staticmethod
    def _send(c, cmd, data=b""):
        c.sendall(struct.pack(">I", len(data) + 1) + cmd + data)

    def _serve(self, c):
        try:
            while True:
                (n,) = struct.unpack(">I", self._recv(c, 4))
                pkt = self._recv(c, n)
                cmd, data = pkt[:1], pkt[1:]
                if cmd == b"O":
                    self._send(c, b"O", struct.pack(">III", 6, 0, 0))
                elif cmd in (b"D", b"A"):
                    continue
                elif cmd == b"Q":
                    return
                elif cmd == b"C" and b"127.0.5." in data:
                    self._send(c, b"y", b"554 5.7.1 Connection refused by the fake milter\0")
                elif cmd == b"H" and data.startswith(b"evil.test"):
                    self._send(c, b"y", b"550 5.7.1 HELO refused by the fake milter\0")
                else:
                    self._send(c, b"c")
        except (EOFError, OSError):
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.lsock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


# --------------------------------------------------------------------------
# fixtures: two servers
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unbound():
    u = LocalUnbound([
        "9.0.0.127.bl.test. 300 IN A 127.0.0.2",         # 127.0.0.9 listed (reject server)
        "7.3.0.127.bl.test. 300 IN A 127.0.0.2",         # 127.0.3.7 listed (tag server)
        "8.0.0.127.bl.test. 300 IN A 127.255.255.254",  # error code: ignored
        "spammer.test.dbl.test. 300 IN A 127.0.1.2",
    ])
    u.start()
    yield u
    u.cleanup()


@pytest.fixture(scope="module")
def peers():
    started = {}
    try:
        started["clamd"] = start_clamd()
        started["milter"] = start_milter()
        started["rspamd"] = start_rspamd()
        yield started
    finally:
        for p in started.values():
            p.cleanup()


@pytest.fixture(scope="module")
def fsrv(make_server, peers, unbound):
    """Content filters: clamd (tempfail), rspamd, the test milter; DNSBL/RHSBL reject."""
    extra = """
dns: { forward: ["%s"] }
clamd: { address: "%s", timeout: 10, on_error: tempfail }
rspamd: { url: "http://%s", timeout: 30, on_error: tempfail }
milters:
  - { name: test, address: "inet:%d@127.0.0.1", timeout: 10, on_error: tempfail }
dnsbl:
  zones:
    - { zone: bl.test, weight: 2 }
    - { zone: dbl.test, weight: 2, rhsbl: true }
  threshold: 2
  action: reject
""" % (unbound.forwarder, peers["clamd"].address, peers["rspamd"].address, peers["milter"].port)
    return make_server("filters", limits={"command_timeout": 60, "data_timeout": 60}, extra_config=extra)


@pytest.fixture(scope="module")
def fake_milter():
    m = FakeMilter()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def psrv(make_server, unbound, fake_milter):
    """Policy: greylisting (delay 3 s), rate limits, DNSBL tag, a dead milter with on_error accept."""
    extra = """
dns: { forward: ["%s"] }
trusted_networks: ["127.0.2.0/24", "127.0.3.0/24"]
auth_allow_plaintext: true
milters:
  - { name: fake, address: "127.0.0.1:%d", timeout: 5 }
  - { name: dead, address: "127.0.0.1:%d", timeout: 2, on_error: accept }
milters_on_submission: true
dnsbl:
  zones:
    - { zone: bl.test, weight: 1 }
  action: tag
greylisting: { enabled: true, delay: 3, retry_window: 60, pass_ttl: 3600 }
rate_limits:
  connections_per_ip: "3/6"
  messages_per_ip: "2/4"
  recipients_per_ip: "3/6"
  messages_per_user: "2/4"
""" % (unbound.forwarder, fake_milter.port, closed_port())
    return make_server("policy", extra_config=extra)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def wait_advertised(text):
    """Sleep for the "try again in N seconds" of a rate-limit reply (N is rounded up)."""
    m = re.search(r"try again in (\d+) seconds", text)
    assert m, text
    n = int(m.group(1))
    assert 1 <= n <= 6, text
    time.sleep(n + 0.2)


def send(port, rcpts, message, sender="sender@client.test", source=None, ehlo="client.test"):
    """One message; returns the final (code, text) or the first refusal."""
    with RawSMTP(port, source=source) as c:
        assert c.banner[0] == 220, c.banner
        c.ehlo(ehlo)
        code, text = c.cmd("MAIL FROM:<%s>" % sender)
        if code != 250:
            return code, text
        for r in rcpts:
            code, text = c.cmd("RCPT TO:<%s>" % r)
            if code != 250:
                return code, text
        code, text = c.cmd("DATA")
        if code != 354:
            return code, text
        c.send(data_payload(message))
        res = c.reply()
        c.cmd("QUIT")
        return res


def junk(srv, address, token):
    d = os.path.join(srv.maildir(address), ".Junk")
    out = []
    for sub in ("new", "cur"):
        try:
            names = os.listdir(os.path.join(d, sub))
        except OSError:
            continue
        for n in names:
            with open(os.path.join(d, sub, n), "rb") as f:
                m = f.read()
            if token.encode() in m:
                out.append(m)
    return out


def headers(msg):
    return header_block(msg)


# --------------------------------------------------------------------------
# clamd, rspamd, milter
# --------------------------------------------------------------------------

def test_clean_message_passes_every_filter(fsrv):
    tok = unique_token("clean")
    code, text = send(fsrv.ports["mx"], [ALICE], build_message(tok))
    assert code == 250, (code, text)
    msg = fsrv.wait_for_message(ALICE, tok)
    h = headers(msg)
    assert "X-Test-Milter: seen" in h, h
    info = [l for l in h if l.startswith("X-Test-Milter-Info:")]
    assert info and "rcpts=1" in info[0] and "from=<sender@client.test>" in info[0], info
    # the Received: trace header stays first
    assert h[0].startswith("Received:") or any(l.startswith("Received:") for l in h)


def test_eicar_is_rejected(fsrv):
    tok = unique_token("eicar")
    code, text = send(fsrv.ports["mx"], [ALICE], build_message(tok, body=EICAR + "\r\n"))
    assert code == 554 and text.startswith("5.7.1"), (code, text)
    assert "Eicar-Test-Signature" in text, text
    fsrv.barrier()
    fsrv.assert_absent(tok)


def test_gtube_is_rejected_by_rspamd(fsrv):
    tok = unique_token("gtube")
    code, text = send(fsrv.ports["mx"], [ALICE], build_message(tok, body=GTUBE + "\r\n"))
    assert code == 554 and text.startswith("5.7.1"), (code, text)
    fsrv.barrier()
    fsrv.assert_absent(tok)


def test_rspamd_add_header_goes_to_junk(fsrv):
    tok = unique_token("RSPAMD-SPAM-TOKEN")
    code, text = send(fsrv.ports["mx"], [ALICE], build_message(tok))
    assert code == 250, (code, text)
    found = wait_until(lambda: junk(fsrv, ALICE, tok), 30, what="delivery into Junk")
    h = headers(found[0])
    assert "X-Spam: Yes" in h, h
    assert not fsrv.find(ALICE, tok), "spam must not be in the INBOX"


def test_milter_rejects_at_end_of_message(fsrv):
    tok = unique_token("rejectme")
    code, text = send(fsrv.ports["mx"], [ALICE], build_message(tok, body="please REJECTME\r\n"))
    assert code == 550, (code, text)
    assert text == "5.7.1 Rejected by the test milter", text
    fsrv.barrier()
    fsrv.assert_absent(tok)


def test_milter_rcpt_refusal_and_discard(fsrv):
    with RawSMTP(fsrv.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<blocked@example.test>")
        assert code == 550 and text.startswith("5.1.1"), (code, text)
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        tok = unique_token("discard")
        c.send(data_payload(build_message(tok, body="DISCARDME\r\n")))
        code, text = c.reply()
        assert code == 250, (code, text)
        # the session goes on: RSET aborts the milter transaction, a new message passes
        assert c.cmd("RSET")[0] == 250
        tok2 = unique_token("after-discard")
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(tok2, body="INSHDR\r\n")))
        assert c.reply()[0] == 250
        c.cmd("QUIT")
    msg = fsrv.wait_for_message(ALICE, tok2)
    assert "X-Inserted: top" in headers(msg)
    fsrv.assert_absent(tok)


def test_milter_changes_headers_and_replaces_the_body(fsrv):
    """CHGSUBJECT/DELHDR/REPLBODY: the spool file is rewritten before the commit."""
    tok = unique_token("mods")
    msg = build_message(tok, body="CHGSUBJECT DELHDR REPLBODY\r\n",
                        extra_headers="X-Remove-Me: yes\r\nX-Keep-Me: yes\r\n")
    code, text = send(fsrv.ports["mx"], [ALICE], msg)
    assert code == 250, (code, text)
    # the token was in the Subject, which the milter changed: find the message by its Message-ID
    got = wait_until(lambda: [m for _, m in fsrv.messages(ALICE) if tok.encode() in m], 30,
                     what="the modified message")
    m = got[0].decode(errors="replace")
    h = headers(got[0])
    assert "Subject: changed" in h, h
    assert "X-Remove-Me" not in h and "X-Keep-Me: yes" in h, h
    body = m.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in m else m.split("\n\n", 1)[1]
    assert body.strip() == "replaced body", body


def test_milter_quarantine_holds_the_message(fsrv):
    tok = unique_token("quarantine")
    code, text = send(fsrv.ports["mx"], [ALICE], build_message(tok, body="QUARANTINE\r\n"))
    assert code == 250, (code, text)
    fsrv.barrier()
    fsrv.assert_absent(tok)
    assert not junk(fsrv, ALICE, tok)


def test_bdat_runs_the_milter_data_stage(fsrv):
    tok = unique_token("bdat")
    body = build_message(tok).encode()
    with RawSMTP(fsrv.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        code, text = c.reply()
        assert code == 250, (code, text)
    assert "X-Test-Milter: seen" in headers(fsrv.wait_for_message(ALICE, tok))


def test_milters_after_starttls(fsrv):
    tok = unique_token("tls")
    with RawSMTP(fsrv.ports["mx"]) as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(tok)))
        code, text = c.reply()
        assert code == 250, (code, text)
    assert "X-Test-Milter: seen" in headers(fsrv.wait_for_message(ALICE, tok))


def test_dnsbl_listed_client_gets_554_greeting(fsrv):
    with RawSMTP(fsrv.ports["mx"], source="127.0.0.9") as c:
        code, text = c.banner
        assert code == 554, c.banner
        assert text == "5.7.1 Service unavailable; client [127.0.0.9] listed at bl.test", text
        assert c.cmd("EHLO client.test")[0] == 503
        assert c.cmd("MAIL FROM:<a@b.test>")[0] == 503
        assert c.cmd("QUIT")[0] == 221
    # an error code (127.255.255.x) is not a listing
    with RawSMTP(fsrv.ports["mx"], source="127.0.0.8") as c:
        assert c.banner[0] == 220, c.banner


def test_rhsbl_listed_sender_domain_refused_at_mail(fsrv):
    with RawSMTP(fsrv.ports["mx"]) as c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<bad@spammer.test>")
        assert code == 554, (code, text)
        assert "listed at dbl.test" in text, text
        assert c.cmd("MAIL FROM:<good@client.test>")[0] == 250


def test_clamd_down_tempfails(fsrv, peers):
    peers["clamd"].stop()
    tok = unique_token("clamd-down")
    code, text = send(fsrv.ports["mx"], [ALICE], build_message(tok))
    assert code == 451, (code, text)
    fsrv.assert_absent(tok)


# --------------------------------------------------------------------------
# greylisting, rate limits, DNSBL tag
# --------------------------------------------------------------------------

def test_greylisting_defer_then_pass(psrv):
    src = "127.0.1.5"
    tok = unique_token("grey")
    msg = build_message(tok)

    def attempt():
        with RawSMTP(psrv.ports["mx"], source=src) as c:
            assert c.banner[0] == 220
            c.ehlo()
            assert c.cmd("MAIL FROM:<grey@client.test>")[0] == 250
            code, text = c.cmd("RCPT TO:<%s>" % ALICE)
            if code != 250:
                return code, text
            assert c.cmd("DATA")[0] == 354
            c.send(data_payload(msg))
            return c.reply()

    t0 = time.monotonic()
    code, text = attempt()
    assert code == 451, (code, text)
    assert text.startswith("4.7.1 Greylisted, try again in "), text
    code, text = attempt()          # too early
    assert code == 451, (code, text)
    time.sleep(max(0, 3.3 - (time.monotonic() - t0)))
    code, text = attempt()
    assert code == 250, (code, text)
    psrv.wait_for_message(ALICE, tok)
    # the whole network is pass-listed now: a new triplet passes at once
    with RawSMTP(psrv.ports["mx"], source="127.0.1.6") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<other@elsewhere.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250


def test_rate_limit_connections(psrv):
    src = "127.0.2.10"
    held = []
    try:
        for _ in range(3):
            c = RawSMTP(psrv.ports["mx"], source=src)
            assert c.banner[0] == 220, c.banner
            held.append(c)
        c = RawSMTP(psrv.ports["mx"], source=src)
        held.append(c)
        assert c.banner[0] == 421, c.banner
        assert c.banner[1].startswith("4.7.0"), c.banner
        assert c.wait_closed(5)
        retry = c.banner[1]
        # another client is not affected
        with RawSMTP(psrv.ports["mx"], source="127.0.2.11") as o:
            assert o.banner[0] == 220
    finally:
        for c in held:
            c.close()
    wait_advertised(retry)  # 3 per 6 s: one token every 2 s
    with RawSMTP(psrv.ports["mx"], source=src) as c:
        assert c.banner[0] == 220, c.banner


def test_rate_limit_messages_and_recipients(psrv):
    src = "127.0.2.20"
    with RawSMTP(psrv.ports["mx"], source=src) as c:
        c.ehlo()
        for _ in range(2):
            assert c.cmd("MAIL FROM:<r@client.test>")[0] == 250
            assert c.cmd("RSET")[0] == 250
        code, text = c.cmd("MAIL FROM:<r@client.test>")
        assert code == 451 and text.startswith("4.7.1"), (code, text)
        wait_advertised(text)
        assert c.cmd("MAIL FROM:<r@client.test>")[0] == 250
        for _ in range(3):
            assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        code, text = c.cmd("RCPT TO:<%s>" % BOB)
        assert code == 452 and text.startswith("4.7.1"), (code, text)
        wait_advertised(text)
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        assert c.cmd("DATA")[0] == 354
        tok = unique_token("rate")
        c.send(data_payload(build_message(tok)))
        # the dead milter (on_error accept) does not hold the message
        assert c.reply()[0] == 250
    psrv.wait_for_message(BOB, tok)


def test_rate_limit_messages_per_user(psrv):
    import base64
    auth = base64.b64encode(b"\0alice@example.test\0" + USERS[ALICE].encode()).decode()
    with RawSMTP(psrv.ports["submission"], source="127.0.4.1") as c:
        c.ehlo()
        assert c.cmd("AUTH PLAIN " + auth)[0] == 235
        for _ in range(2):
            assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
            assert c.cmd("RSET")[0] == 250
        code, text = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert code == 451 and text.startswith("4.7.1"), (code, text)
        wait_advertised(text)
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250


def test_dnsbl_tag_adds_header(psrv):
    tok = unique_token("tagged")
    code, text = send(psrv.ports["mx"], [ALICE], build_message(tok), source="127.0.3.7")
    assert code == 250, (code, text)
    h = headers(psrv.wait_for_message(ALICE, tok))
    tags = [l for l in h if l.startswith("X-DNSBL:")]
    assert tags and "bl.test=127.0.0.2" in tags[0], h


def test_milter_refuses_at_connect_and_helo(psrv):
    # refused at connect: greeted, then every command gets the milter's reply; QUIT works
    with RawSMTP(psrv.ports["mx"], source="127.0.5.1") as c:
        assert c.banner[0] == 220, c.banner
        code, text = c.cmd("EHLO client.test")
        assert (code, text) == (554, "5.7.1 Connection refused by the fake milter"), (code, text)
        assert c.cmd("MAIL FROM:<a@client.test>")[0] == 554
        assert c.cmd("QUIT")[0] == 221
    # refused at HELO: that HELO and what follows
    with RawSMTP(psrv.ports["mx"], source="127.0.2.30") as c:
        code, text = c.cmd("EHLO evil.test")
        assert (code, text) == (550, "5.7.1 HELO refused by the fake milter"), (code, text)
        assert c.cmd("MAIL FROM:<a@client.test>")[0] == 550
    # a good client through the same chain (the dead milter is skipped: on_error accept)
    tok = unique_token("fake-ok")
    code, text = send(psrv.ports["mx"], [ALICE], build_message(tok), source="127.0.2.31")
    assert code == 250, (code, text)
    psrv.wait_for_message(ALICE, tok)
