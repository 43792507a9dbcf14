"""
Queue-fed named targets end to end (src/queued/queue_triggers.c): webhooks over
HTTPS to a local receiver that checks the HMAC signature and counts deliveries
by Idempotency-Key (retries until a 2xx, exactly once; redirect loops and huge
answers are classified failures; dead letters after queue.max_age and
`mailroute webhook list|replay`), pipes (stdin to a command, EX_TEMPFAIL
retried, a hanging command killed at its timeout, other exit codes bounce with
the command's output), and auto-replies (once per sender per period, never to
lists, bulk mail or the null sender).
"""
import hashlib
import hmac
import http.server
import json
import os
import re
import ssl
import subprocess
import threading
import time

import pytest

from conftest import build_message, free_port, make_tmpdir, send_plain, unique_token, wait_until

D = "example.test"
SECRET = "whsec-e2e-secret"


# --------------------------------------------------------------------------
# the HTTPS receiver
# --------------------------------------------------------------------------

class Receiver:
    """HTTPS server on 127.0.0.1: /hook answers per self.mode; records every request."""

    def __init__(self, cert, key, port=None):
        self.lock = threading.Lock()
        self.requests = []          # every request: dict(path, key, body, sig_ok, status)
        self.accepted = {}          # Idempotency-Key -> number of 2xx answers
        self.fail_first = {}        # Idempotency-Key -> how many 503 answers before 200
        self.mode = "ok"            # ok | 503
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ts = self.headers.get("X-Mailroute-Timestamp", "")
                sig = self.headers.get("X-Mailroute-Signature", "")
                want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body,
                                            hashlib.sha256).hexdigest()
                key = self.headers.get("Idempotency-Key", "")
                entry = {"path": self.path, "key": key, "body": body, "sig_ok": hmac.compare_digest(sig, want),
                         "ts": ts}
                if self.path.startswith("/redirect"):
                    entry["status"] = 302
                    rec._record(entry)
                    self.send_response(302)
                    self.send_header("Location", "/redirect/again")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/huge"):
                    entry["status"] = 200
                    rec._record(entry)
                    self.send_response(200)
                    self.send_header("Content-Length", str(50 * 1024 * 1024))
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        for _ in range(800):
                            self.wfile.write(chunk)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                with rec.lock:
                    left = rec.fail_first.get(key, 0)
                    if left > 0:
                        rec.fail_first[key] = left - 1
                    status = 503 if (rec.mode == "503" or left > 0) else 200
                    entry["status"] = status
                    rec.requests.append(entry)
                    if status == 200:
                        rec.accepted[key] = rec.accepted.get(key, 0) + 1
                out = b'{"ok":true}' if status == 200 else b"busy"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, entry):
        with self.lock:
            self.requests.append(entry)

    def for_key(self, key):
        with self.lock:
            return [r for r in self.requests if r["key"] == key]

    def paths(self, prefix):
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def https_cert():
    d = make_tmpdir("mailroute-e2e-hook-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-days", "2", "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)
    return cert, key


@pytest.fixture(scope="module")
def receiver(https_cert):
    r = Receiver(*https_cert)
    yield r
    r.stop()


def queued_id(res):
    code, text = res
    assert code == 250, res
    m = re.search(r"queued as (\S+)", text)
    assert m, text
    return m.group(1)


def wait_log(srv, pattern, timeout=30):
    rx = re.compile(pattern)
    return wait_until(lambda: rx.search(srv.stderr_text()), timeout, what=pattern)


def queue_empty_of(srv, qid):
    out = srv.cli("queue", "list", check=False).stdout.decode(errors="replace")
    return qid not in out


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trig(make_server, receiver, https_cert):
    s = make_server("triggers", start=False)
    work = os.path.join(s.root, "work")
    os.makedirs(work)
    os.chmod(work, 0o777)
    base = "https://127.0.0.1:%d" % receiver.port
    ca = https_cert[0]
    sh = "/bin/sh"
    s.work = work
    rules = os.path.join(s.root, "rules.sieve")
    with open(rules, "w") as f:
        f.write('require ["vnd.mailroute"];\nif header :contains "subject" "[crm]" { webhook "crm"; }\n')
    os.chmod(rules, 0o644)
    s.extra_config = """
rules: "{rules}"
queue: {{ retry_min: 1, retry_max: 2 }}
webhooks:
  - {{ name: crm, url: "{base}/hook", secret: "{secret}", timeout: 5, tls_ca_file: "{ca}" }}
  - {{ name: loop, url: "{base}/redirect", secret: "{secret}", timeout: 5, tls_ca_file: "{ca}" }}
  - {{ name: huge, url: "{base}/huge", secret: "{secret}", timeout: 5, tls_ca_file: "{ca}" }}
  - {{ name: untrusted, url: "{base}/hook", secret: "{secret}", timeout: 5 }}
pipes:
  - {{ name: save, command: [{sh}, -c, 'cat > "$1/$QUEUE_ID.msg"; env > "$1/$QUEUE_ID.env"', sh, "{work}"] }}
  - {{ name: tempfail, command: [{sh}, -c, 'if [ -e "$1/tf.mark" ]; then cat > "$1/tf.msg"; exit 0; fi; touch "$1/tf.mark"; exit 75', sh, "{work}"] }}
  - {{ name: hang, timeout: 2, command: [{sh}, -c, 'if [ -e "$1/hang.mark" ]; then cat > /dev/null; exit 0; fi; touch "$1/hang.mark"; echo $$ > "$1/hang.pid"; exec sleep 1000', sh, "{work}"] }}
  - {{ name: nouser, command: [{sh}, -c, 'echo "mailbox unknown here" >&2; exit 67'] }}
  - {{ name: asnobody, user: nobody, command: [/bin/true] }}
autoreplies:
  - {{ name: info, from: "Info Desk <info@example.test>", subject: "We got your mail", text: "Hello ${{sender}},\\nthanks for writing.\\n", period: 3600 }}
""".format(base=base, secret=SECRET, ca=ca, sh=sh, work=work, rules=rules)
    s.write_config()
    aliases = {
        "hook": "webhook:crm", "loop": "webhook:loop", "huge": "webhook:huge", "untrusted": "webhook:untrusted",
        "save": "pipe:save", "temp": "pipe:tempfail", "hang": "pipe:hang", "nouser": "pipe:nouser", "asnobody": "pipe:asnobody",
        "auto": "autoreply:info",
    }
    for local, target in aliases.items():
        s.cli("alias", "add", "%s@%s" % (local, D), target)
    s.start()
    return s


# --------------------------------------------------------------------------
# webhooks
# --------------------------------------------------------------------------

def test_webhook_delivers_signed_json(trig, receiver):
    tok = unique_token("hook")
    msg = ("From: =?UTF-8?Q?J=C3=BCrgen?= <j@client.test>\r\nTo: hook@example.test\r\nCc: c@client.test\r\n"
           "Subject: =?UTF-8?B?R3LDvMOfZQ==?= %s\r\nMessage-ID: <%s@client.test>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
           "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody %s\r\n"
           "--b1\r\nContent-Type: text/html\r\n\r\n<p>%s</p>\r\n"
           "--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--b1--\r\n") % (tok, tok, tok, tok)
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["hook@example.test"], msg))
    key = qid + "-0"
    wait_until(lambda: receiver.accepted.get(key), 20, what="webhook delivery")
    reqs = receiver.for_key(key)
    assert len(reqs) == 1 and reqs[0]["sig_ok"], reqs
    assert abs(int(reqs[0]["ts"]) - time.time()) < 60
    doc = json.loads(reqs[0]["body"])
    assert doc["webhook"] == "crm"
    assert doc["queue_id"] == qid and doc["idempotency_key"] == key
    assert doc["envelope"]["sender"] == "j@client.test"
    assert doc["envelope"]["recipient"] == "hook@example.test"
    assert doc["envelope"]["original_recipient"] == "hook@example.test"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", doc["envelope"]["arrival"])
    assert doc["headers"]["from"] == "J\u00fcrgen <j@client.test>"
    assert doc["headers"]["subject"] == "Gr\u00fc\u00dfe " + tok
    assert doc["headers"]["cc"] == "c@client.test"
    assert doc["headers"]["message_id"] == "<%s@client.test>" % tok
    assert doc["text"].startswith("body " + tok)
    assert doc["html"] == "<p>%s</p>" % tok
    assert doc["attachments"] == [{"filename": "a.bin", "content_type": "application/octet-stream", "size": 6}]
    wait_until(lambda: queue_empty_of(trig, qid), 10, what="queue entry removed")


def test_webhook_from_system_rules(trig, receiver):
    """`webhook "crm";` in the system rules: the recipient keeps its copy, the webhook gets its own."""
    tok = unique_token("rule")
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["alice@example.test"],
                               build_message("[crm] " + tok, to="alice@example.test")))
    trig.wait_for_message("alice@example.test", tok)
    key = qid + "-1"
    wait_until(lambda: receiver.accepted.get(key), 20, what="webhook from the rules")
    doc = json.loads(receiver.for_key(key)[0]["body"])
    assert doc["webhook"] == "crm" and tok in doc["headers"]["subject"]
    assert receiver.for_key(key)[0]["sig_ok"]
    wait_until(lambda: queue_empty_of(trig, qid), 10, what="queue entry removed")
    # without the tag no webhook
    tok2 = unique_token("norule")
    qid2 = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["alice@example.test"],
                                build_message(tok2, to="alice@example.test")))
    trig.wait_for_message("alice@example.test", tok2)
    wait_until(lambda: queue_empty_of(trig, qid2), 10, what="queue entry removed")
    assert not [r for r in receiver.requests if r["key"].startswith(qid2)]


def test_webhook_retried_until_2xx_exactly_once(trig, receiver):
    tok = unique_token("retry")
    # The receiver is "down" (503) for the first three tries of this message's key.
    with receiver.lock:
        receiver.mode = "503"
    try:
        qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["hook@example.test"],
                                   build_message(tok, to="hook@example.test")))
        key = qid + "-0"
        wait_until(lambda: len(receiver.for_key(key)) >= 2, 20, what="two failed attempts")
        assert receiver.accepted.get(key) is None
        wait_log(trig, r"event=webhook_deferred id=%s rcpt=0 webhook=crm error=\"4\.3\.0 webhook crm: HTTP status 503" % qid)
    finally:
        with receiver.lock:
            receiver.mode = "ok"
    wait_until(lambda: receiver.accepted.get(key), 20, what="delivery after the receiver came back")
    wait_until(lambda: queue_empty_of(trig, qid), 10, what="queue entry removed")
    time.sleep(3)  # longer than retry_max: a second delivery would show up now
    assert receiver.accepted[key] == 1
    assert all(r["sig_ok"] for r in receiver.for_key(key))
    assert [r["status"] for r in receiver.for_key(key)][-1] == 200


def test_webhook_receiver_port_closed_then_up(make_server, https_cert):
    """A receiver that is not listening at all: deferred, delivered once it listens."""
    port = free_port()
    s = make_server("trig-down", start=False)
    s.extra_config = """
queue: {{ retry_min: 1, retry_max: 2 }}
webhooks:
  - {{ name: crm, url: "https://127.0.0.1:{port}/hook", secret: "{secret}", timeout: 3, tls_ca_file: "{ca}" }}
""".format(port=port, secret=SECRET, ca=https_cert[0])
    s.write_config()
    s.cli("alias", "add", "hook@%s" % D, "webhook:crm")
    s.start()
    qid = queued_id(send_plain(s.ports["mx"], "j@client.test", ["hook@example.test"],
                               build_message(unique_token("down"), to="hook@example.test")))
    wait_log(s, r"event=webhook_deferred id=%s rcpt=0 webhook=crm error=\"4\.4\.1 webhook crm: Couldn't connect" % qid)
    r = Receiver(*https_cert, port=port)
    try:
        wait_until(lambda: r.accepted.get(qid + "-0"), 20, what="delivery after the receiver started")
        wait_until(lambda: queue_empty_of(s, qid), 10, what="queue entry removed")
        time.sleep(3)
        assert r.accepted[qid + "-0"] == 1
    finally:
        r.stop()


def test_webhook_redirect_loop_is_a_failure(trig, receiver):
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["loop@example.test"],
                               build_message(unique_token("loop"), to="loop@example.test")))
    t0 = time.monotonic()
    wait_log(trig, r"event=webhook_deferred id=%s rcpt=0 webhook=loop error=\"4\.4\.1 webhook loop: Number of redirects" % qid, 15)
    assert time.monotonic() - t0 < 15
    # at most 1 + 3 redirects per attempt
    first = len(receiver.paths("/redirect"))
    assert 1 <= first
    trig.cli("queue", "delete", qid)


def test_webhook_huge_answer_is_a_failure(trig, receiver):
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["huge@example.test"],
                               build_message(unique_token("huge"), to="huge@example.test")))
    t0 = time.monotonic()
    wait_log(trig, r"event=webhook_deferred id=%s rcpt=0 webhook=huge error=\"4\.3\.0 webhook huge: response larger than" % qid, 15)
    assert time.monotonic() - t0 < 15
    trig.cli("queue", "delete", qid)


def test_webhook_unknown_ca_is_refused(trig, receiver):
    """Without tls_ca_file the self-signed receiver is not trusted: deferred, nothing accepted."""
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["untrusted@example.test"],
                               build_message(unique_token("ca"), to="untrusted@example.test")))
    wait_log(trig, r"event=webhook_deferred id=%s rcpt=0 webhook=untrusted error=\"4\.4\.1" % qid, 15)
    assert receiver.accepted.get(qid + "-0") is None
    trig.cli("queue", "delete", qid)


def test_webhook_dead_letter_and_replay(make_server, https_cert):
    r = Receiver(*https_cert)
    s = make_server("trig-dead", start=False)
    s.extra_config = """
queue: {{ retry_min: 1, retry_max: 1, max_age: 3 }}
webhooks:
  - {{ name: crm, url: "https://127.0.0.1:{port}/hook", secret: "{secret}", timeout: 3, tls_ca_file: "{ca}" }}
""".format(port=r.port, secret=SECRET, ca=https_cert[0])
    s.write_config()
    s.cli("alias", "add", "hook@%s" % D, "webhook:crm")
    s.start()
    try:
        r.mode = "503"
        tok = unique_token("dead")
        qid = queued_id(send_plain(s.ports["mx"], "alice@example.test", ["hook@example.test"],
                                   build_message(tok, sender="alice@example.test", to="hook@example.test")))
        key = qid + "-0"
        wait_log(s, r"event=webhook_deadletter id=%s rcpt=0 webhook=crm" % qid, 30)
        wait_until(lambda: queue_empty_of(s, qid), 10, what="queue entry finished")
        out = s.cli("webhook", "list").stdout.decode()
        assert out.startswith(key + "\tcrm\t"), out
        assert "HTTP status 503" in out
        # no bounce for a dead-lettered webhook
        time.sleep(1)
        assert not any(b"Delivery Status" in m for _, m in s.messages("alice@example.test"))
        # still down: replay fails and keeps it
        p = s.cli("webhook", "replay", key, check=False)
        assert p.returncode == 1 and b"503" in p.stderr
        assert key in s.cli("webhook", "list").stdout.decode()
        r.mode = "ok"
        p = s.cli("webhook", "replay", "--all")
        assert p.stdout.decode() == key + "\tdelivered\n"
        assert r.accepted.get(key) == 1
        last = r.for_key(key)[-1]
        assert last["sig_ok"] and json.loads(last["body"])["queue_id"] == qid
        assert s.cli("webhook", "list").stdout.decode() == ""
        p = s.cli("webhook", "replay", key, check=False)
        assert p.returncode == 1 and b"no dead letter" in p.stderr
    finally:
        r.stop()


# --------------------------------------------------------------------------
# pipes
# --------------------------------------------------------------------------

def test_pipe_gets_message_and_environment(trig):
    tok = unique_token("pipe")
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["save@example.test"],
                               build_message(tok, to="save@example.test")))
    envf = os.path.join(trig.work, qid + ".env")
    wait_until(lambda: os.path.exists(envf) and os.path.getsize(envf) > 0, 20, what="pipe output")
    wait_until(lambda: queue_empty_of(trig, qid), 10, what="queue entry removed")
    with open(os.path.join(trig.work, qid + ".msg"), "rb") as f:
        data = f.read()
    assert tok.encode() in data
    assert data.startswith(b"Return-Path: <j@client.test>\r\nDelivered-To: save@example.test\r\n")
    env = dict(l.split("=", 1) for l in open(envf).read().splitlines() if "=" in l)
    assert env["SENDER"] == "j@client.test"
    assert env["RECIPIENT"] == "save@example.test"
    assert env["ORIGINAL_RECIPIENT"] == "save@example.test"
    assert env["QUEUE_ID"] == qid
    assert "SHELL" not in env or env.get("SHELL") != os.environ.get("SHELL", "-")


def test_pipe_tempfail_is_retried(trig):
    tok = unique_token("tf")
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["temp@example.test"],
                               build_message(tok, to="temp@example.test")))
    wait_log(trig, r"event=pipe_done id=%s rcpt=0 pipe=tempfail result=deferred \(exit status 75\)" % qid)
    out = os.path.join(trig.work, "tf.msg")
    wait_until(lambda: os.path.exists(out) and tok.encode() in open(out, "rb").read(), 20, what="second attempt")
    wait_until(lambda: queue_empty_of(trig, qid), 10, what="queue entry removed")


def test_pipe_timeout_kills_the_command(trig):
    tok = unique_token("hang")
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["hang@example.test"],
                               build_message(tok, to="hang@example.test")))
    wait_log(trig, r"event=pipe_timeout id=%s rcpt=0 pipe=hang" % qid, 20)
    pid = int(open(os.path.join(trig.work, "hang.pid")).read().strip())
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or
               open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z", 5, what="killed")
    wait_log(trig, r"event=pipe_done id=%s rcpt=0 pipe=hang result=deferred \(timed out" % qid)
    # the next attempt (the mark exists) succeeds
    wait_until(lambda: queue_empty_of(trig, qid), 20, what="delivered on retry")
    assert re.search(r"event=pipe_done id=%s rcpt=0 pipe=hang result=delivered" % qid, trig.stderr_text())


def test_pipe_permanent_failure_bounces_with_output(trig):
    tok = unique_token("nouser")
    qid = queued_id(send_plain(trig.ports["mx"], "alice@example.test", ["nouser@example.test"],
                               build_message(tok, sender="alice@example.test", to="nouser@example.test")))
    wait_log(trig, r"event=bounced id=%s rcpt=0 status=5\.3\.0" % qid)

    def dsn():
        for _, m in trig.messages("alice@example.test"):
            if b"mailbox unknown here" in m and qid.encode() in m:
                return m
        return None
    m = wait_until(dsn, 20, what="bounce to the sender")
    assert b"5.3.0" in m and b"exit status 67" in m


def test_pipe_other_user_is_deferred_with_reason(trig):
    """The queue role runs as `mailroute`: a pipe configured for another user cannot run (deferred, logged)."""
    assert "event=pipe_user_unavailable pipe=asnobody user=nobody" in trig.stderr_text()
    qid = queued_id(send_plain(trig.ports["mx"], "j@client.test", ["asnobody@example.test"],
                               build_message(unique_token("nobody"), to="asnobody@example.test")))
    wait_until(lambda: "cannot run as nobody" in trig.cli("queue", "show", qid, check=False).stdout.decode(
        errors="replace"), 20, what="deferral reason in the queue")
    trig.cli("queue", "delete", qid)


def test_webhook_cli_usage(trig):
    for args in (("webhook",), ("webhook", "replay"), ("webhook", "list", "x"), ("webhook", "send")):
        p = trig.cli(*args, check=False)
        assert p.returncode == 2 and b"usage: webhook" in p.stderr, (args, p.stderr)
    p = trig.cli("webhook", "replay", "../../etc/passwd", check=False)
    assert p.returncode == 1 and b"bad dead letter name" in p.stderr


# --------------------------------------------------------------------------
# auto-replies
# --------------------------------------------------------------------------

def replies_to(srv, address):
    return [m for _, m in srv.messages(address) if b"Subject: We got your mail" in m]


def test_autoreply_once_per_sender_per_period(trig):
    for i in range(2):
        qid = queued_id(send_plain(trig.ports["mx"], "alice@example.test", ["auto@example.test"],
                                   build_message(unique_token("ar%d" % i), sender="alice@example.test",
                                                 to="auto@example.test")))
        wait_until(lambda: queue_empty_of(trig, qid), 20, what="auto-reply target done")
    wait_until(lambda: replies_to(trig, "alice@example.test"), 20, what="the auto-reply")
    time.sleep(2)
    reps = replies_to(trig, "alice@example.test")
    assert len(reps) == 1, reps
    m = reps[0]
    assert b"Auto-Submitted: auto-replied" in m
    assert b"Return-Path: <>" in m
    assert b"In-Reply-To: <" in m
    assert b"Hello alice@example.test,\r\nthanks for writing." in m
    assert re.search(r"autoreply=info reason=\"already replied within the period\"", trig.stderr_text())


@pytest.mark.parametrize("sender,extra", [
    ("bob@example.test", "List-Id: <news.client.test>\r\n"),
    ("bob@example.test", "Precedence: bulk\r\n"),
    ("bob@example.test", "Auto-Submitted: auto-generated\r\n"),
    ("", ""),
])
def test_autoreply_suppressed(trig, sender, extra):
    tok = unique_token("sup")
    msg = "From: x@client.test\r\nTo: auto@example.test\r\nSubject: %s\r\n%s\r\nhello\r\n" % (tok, extra)
    qid = queued_id(send_plain(trig.ports["mx"], sender, ["auto@example.test"], msg))
    wait_log(trig, r"event=autoreply_suppressed id=%s rcpt=0 autoreply=info" % qid)
    wait_until(lambda: queue_empty_of(trig, qid), 10, what="done")
    assert not replies_to(trig, "bob@example.test")


def test_autoreply_after_suppressed_ones_still_answers(trig):
    """bob's list/bulk mail got nothing; his personal mail gets its one reply."""
    qid = queued_id(send_plain(trig.ports["mx"], "bob@example.test", ["auto@example.test"],
                               build_message(unique_token("bob"), sender="bob@example.test", to="auto@example.test")))
    wait_until(lambda: replies_to(trig, "bob@example.test"), 20, what="reply to bob")
    wait_until(lambda: queue_empty_of(trig, qid), 10, what="done")
    assert len(replies_to(trig, "bob@example.test")) == 1
