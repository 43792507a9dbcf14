"""STARTTLS (mx, submission), implicit TLS (submissions/465), AUTH PLAIN/LOGIN."""
import base64
import smtplib
import socket
import ssl
import threading

import pytest

from conftest import (USERS, RawSMTP, build_message, client_tls_context, data_payload, header_block,
                      swaks, unique_token)

ALICE = "alice@example.test"
BOB = "bob@example.test"
ALICE_PW = USERS[ALICE]
BOB_PW = USERS[BOB]


def plain_b64(user, pw, authzid=""):
    return base64.b64encode(("%s\0%s\0%s" % (authzid, user, pw)).encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def kws(text):
    return {l.split()[0].upper(): l.split()[1:] for l in text.split("\n")[1:] if l.split()}


def tls_session(port, ehlo=True):
    c = RawSMTP(port)
    assert c.banner[0] == 220
    c.ehlo()
    c.starttls()
    if ehlo:
        c.ehlo_text = c.ehlo()
    return c


# ---------------------------------------------------------------- STARTTLS

@pytest.mark.parametrize("kind", ["mx", "submission"])
def test_starttls_advertised_then_not_again(server, kind):
    c = RawSMTP(server.ports[kind])
    try:
        assert "STARTTLS" in kws(c.ehlo())
        c.starttls()
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3"), c.sock.version()
        after = kws(c.ehlo())
        assert "STARTTLS" not in after, after
        code, text = c.cmd("STARTTLS")
        assert 500 <= code < 600, (code, text)
    finally:
        c.close()


def test_starttls_delivery_received_shows_tls(server):
    token = unique_token("tls")
    c = tls_session(server.ports["mx"])
    try:
        version = c.sock.version()
        cipher = c.sock.cipher()[0]
        assert c.cmd("MAIL FROM:<t@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token)))
        code, text = c.reply()
        assert code == 250, text
    finally:
        c.close()
    m = server.wait_for_message(ALICE, token)
    received = [h for h in header_block(m) if h.lower().startswith("received:")]
    assert received, header_block(m)
    assert version in received[0] and cipher in received[0], (version, cipher, received[0])


def test_plain_session_received_has_no_tls(server):
    token = unique_token("notls")
    c = RawSMTP(server.ports["mx"])
    try:
        c.ehlo()
        assert c.cmd("MAIL FROM:<t@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token)))
        assert c.reply()[0] == 250
    finally:
        c.close()
    m = server.wait_for_message(ALICE, token)
    received = [h for h in header_block(m) if h.lower().startswith("received:")][0]
    assert "TLSv1" not in received, received


@pytest.mark.parametrize("injected", [
    b"MAIL FROM:<inject@client.test>\r\n",
    b"NOOP\r\nNOOP\r\n",
    b"RSET\r\n",
])
def test_plaintext_after_starttls_is_discarded(server, injected):
    """CVE-2011-0411: commands pipelined in plaintext after STARTTLS must never run."""
    c = RawSMTP(server.ports["mx"])
    try:
        c.ehlo()
        c.send(b"STARTTLS\r\n" + injected)
        code, text = c.reply()
        if code != 220:
            # refusing the whole thing is also safe, as long as no injected command ran
            assert 400 <= code < 600, (code, text)
            return
        assert c.buf == b"", "plaintext sent after the 220 to STARTTLS: %r" % c.buf
        c.sock = client_tls_context().wrap_socket(c.sock)
        c.send(b"EHLO client.test\r\n")
        code, text = c.reply()
        assert code == 250 and text.split("\n")[0].startswith("mx.example.test"), \
            "first reply inside TLS must answer our EHLO, got %d %r" % (code, text)
        # the injected MAIL, had it run, would make this a nested MAIL (503)
        code, text = c.cmd("MAIL FROM:<real@client.test>")
        assert code == 250, (code, text)
        code, text = c.cmd("NOOP")
        assert code == 250, (code, text)
        c.sock.settimeout(1.0)
        try:
            extra = c.sock.recv(4096)
        except (socket.timeout, TimeoutError, ssl.SSLError):
            extra = b""
        assert extra == b"", "unexpected extra replies inside TLS: %r" % extra
    finally:
        c.close()


def test_starttls_forgets_ehlo_state(server):
    c = tls_session(server.ports["mx"], ehlo=False)
    try:
        code, text = c.cmd("MAIL FROM:<t@client.test>")
        assert code == 503, "MAIL right after STARTTLS without a new EHLO: %d %s" % (code, text)
    finally:
        c.close()


def test_starttls_inside_transaction_forgets_it(server):
    """STARTTLS after MAIL: refused (503), or the plaintext transaction is gone inside TLS."""
    c = RawSMTP(server.ports["mx"])
    try:
        c.ehlo()
        assert c.cmd("MAIL FROM:<t@client.test>")[0] == 250
        code, text = c.cmd("STARTTLS")
        if code == 503:
            return
        assert code == 220, (code, text)
        c.sock = client_tls_context().wrap_socket(c.sock)
        c.ehlo()
        code, text = c.cmd("RCPT TO:<alice@example.test>")
        assert code == 503, "MAIL from before STARTTLS survived: RCPT got %d %s" % (code, text)
    finally:
        c.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_old_tls_versions_refused(server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError) as e:
        pytest.skip("this Python/OpenSSL cannot even offer TLS 1.1: %s" % e)
    # prove this client really can speak TLS 1.1 (else the refusal below would prove nothing)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    sctx.minimum_version = ssl.TLSVersion.TLSv1
    sctx.load_cert_chain(server.cert, server.key)
    a, b = socket.socketpair()
    result = {}

    def serve_side():
        try:
            t = sctx.wrap_socket(b, server_side=True)
            result["version"] = t.version()
            t.close()
        except (ssl.SSLError, OSError) as e:
            result["error"] = e

    th = threading.Thread(target=serve_side)
    th.start()
    try:
        ctx.wrap_socket(a).close()
    except (ssl.SSLError, OSError) as e:
        result.setdefault("client_error", e)
    th.join(10)
    a.close()
    b.close()
    if result.get("version") != "TLSv1.1":
        pytest.skip("the local OpenSSL refuses TLS 1.1 on both ends: %r" % result)
    # submissions: implicit TLS
    s = socket.create_connection(("127.0.0.1", server.ports["submissions"]), timeout=30)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        t = ctx.wrap_socket(s)
        t.close()
    s.close()
    # STARTTLS on mx
    c = RawSMTP(server.ports["mx"])
    try:
        c.ehlo()
        assert c.cmd("STARTTLS")[0] == 220
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            ctx.wrap_socket(c.sock)
    finally:
        c.close()


# ---------------------------------------------------------------- 465

def test_submissions_implicit_tls(server):
    c = RawSMTP(server.ports["submissions"], tls=True)
    try:
        assert c.banner[0] == 220
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        k = kws(c.ehlo())
        assert "STARTTLS" not in k, k
        assert "AUTH" in k and {"PLAIN", "LOGIN"} <= set(m.upper() for m in k["AUTH"]), k
    finally:
        c.close()


def test_submissions_plaintext_client_gets_no_banner(server):
    s = socket.create_connection(("127.0.0.1", server.ports["submissions"]), timeout=5)
    try:
        s.settimeout(2)
        try:
            data = s.recv(100)
        except (socket.timeout, TimeoutError):
            data = b""
        assert not data.startswith(b"220"), data
    finally:
        s.close()


def test_submissions_auth_and_send_smtplib(server):
    token = unique_token("465")
    s = smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], timeout=30, context=client_tls_context())
    try:
        s.ehlo("client.test")
        code, resp = s.mail(ALICE)
        assert code == 530, "MAIL before AUTH on submissions: %d %r" % (code, resp)
        s.rset()
        s.login(ALICE, ALICE_PW)
        refused = s.sendmail(ALICE, [BOB], build_message(token, sender=ALICE, to=BOB))
        assert refused == {}
    finally:
        s.quit()
    m = server.wait_for_message(BOB, token)
    assert "Return-Path: <alice@example.test>" in header_block(m)


def test_submissions_received_shows_tls_and_auth_required(server):
    token = unique_token("465rcv")
    c = RawSMTP(server.ports["submissions"], tls=True)
    try:
        version, cipher = c.sock.version(), c.sock.cipher()[0]
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert code == 530 and text.startswith("5.7.0"), (code, text)
        assert c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW))[0] == 235
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token, sender=ALICE, to=BOB)))
        assert c.reply()[0] == 250
    finally:
        c.close()
    m = server.wait_for_message(BOB, token)
    received = [h for h in header_block(m) if h.lower().startswith("received:")][0]
    assert version in received and cipher in received, (version, cipher, received)
    assert ALICE_PW not in m.decode("utf-8", "replace")


def test_swaks_implicit_tls_auth(server):
    token = unique_token("swaks465")
    p = swaks("--server", "127.0.0.1", "--port", str(server.ports["submissions"]), "--tls-on-connect",
              "--auth", "LOGIN", "--auth-user", BOB, "--auth-password", BOB_PW,
              "--from", BOB, "--to", ALICE, "--header", "Subject: " + token)
    assert p.returncode == 0, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    server.wait_for_message(ALICE, token)


# ---------------------------------------------------------------- AUTH on submission (587)

def test_submission_auth_refused_outside_tls(server):
    c = RawSMTP(server.ports["submission"])
    try:
        c.ehlo()
        code, text = c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW))
        assert (code == 538 and text.startswith("5.7.11")) or \
            (code == 530 and text.startswith("5.7.0")), (code, text)
        code, text = c.cmd("AUTH LOGIN")
        assert code in (538, 530), (code, text)
    finally:
        c.close()


def test_submission_mail_requires_auth(server):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("MAIL FROM:<%s>" % ALICE)
        assert code == 530 and text.startswith("5.7.0"), (code, text)
    finally:
        c.close()


def test_submission_auth_advertised_inside_tls(server):
    c = tls_session(server.ports["submission"])
    try:
        k = kws(c.ehlo_text)
        assert "AUTH" in k and {"PLAIN", "LOGIN"} <= set(m.upper() for m in k["AUTH"]), k
    finally:
        c.close()


def test_auth_plain_inline_then_relay_allowed(server):
    token = unique_token("authplain")
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW))
        assert code == 235 and text.startswith("2.7.0"), (code, text)
        code, text = c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW))
        assert code == 503, "second AUTH: %d %s" % (code, text)
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
        # authenticated: a remote recipient is accepted (relay), and a local one
        code, text = c.cmd("RCPT TO:<someone@remote.test>")
        assert code == 250, (code, text)
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token, sender=ALICE, to=BOB)))
        code, text = c.reply()
        assert code == 250, text
    finally:
        c.close()
    server.wait_for_message(BOB, token)


def test_auth_plain_continuation(server):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("AUTH PLAIN")
        assert code == 334, (code, text)
        code, text = c.cmd(plain_b64(BOB, BOB_PW))
        assert code == 235, (code, text)
    finally:
        c.close()


def test_auth_login(server):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("AUTH LOGIN")
        assert code == 334 and base64.b64decode(text).lower().startswith(b"username"), (code, text)
        code, text = c.cmd(b64(ALICE))
        assert code == 334 and base64.b64decode(text).lower().startswith(b"password"), (code, text)
        code, text = c.cmd(b64(ALICE_PW))
        assert code == 235, (code, text)
    finally:
        c.close()


def test_auth_login_initial_response(server):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("AUTH LOGIN " + b64(ALICE))
        assert code == 334, (code, text)
        code, text = c.cmd(b64(ALICE_PW))
        assert code == 235, (code, text)
    finally:
        c.close()


@pytest.mark.parametrize("line,codes", [
    ("AUTH CRAM-MD5", (504,)),
    ("AUTH FOOBAR", (504,)),
    ("AUTH PLAIN !!!notbase64!!!", (501,)),
    ("AUTH", (501,)),
])
def test_auth_bad_syntax(server, line, codes):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd(line)
        assert code in codes, (line, code, text)
    finally:
        c.close()


def test_auth_cancel(server):
    c = tls_session(server.ports["submission"])
    try:
        assert c.cmd("AUTH LOGIN")[0] == 334
        code, text = c.cmd("*")
        assert code == 501, (code, text)
        assert c.cmd("NOOP")[0] == 250
    finally:
        c.close()


def test_swaks_starttls_auth_plain(server):
    token = unique_token("swaks587")
    p = swaks("--server", "127.0.0.1", "--port", str(server.ports["submission"]), "--tls",
              "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", ALICE_PW,
              "--from", ALICE, "--to", BOB, "--header", "Subject: " + token)
    assert p.returncode == 0, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    server.wait_for_message(BOB, token)


def test_smtplib_starttls_login(server):
    token = unique_token("587lib")
    s = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30)
    try:
        s.ehlo("client.test")
        s.starttls(context=client_tls_context())
        s.ehlo("client.test")
        s.login(BOB, BOB_PW)
        refused = s.sendmail(BOB, [ALICE], build_message(token, sender=BOB))
        assert refused == {}
    finally:
        s.quit()
    server.wait_for_message(ALICE, token)


# failed logins last: the lookup role delays and rate-limits them per client IP
def test_auth_authzid_other_user_refused(server):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("AUTH PLAIN " + plain_b64(ALICE, ALICE_PW, authzid=BOB))
        assert code in (535, 501, 534), "alice must not act as bob: %d %s" % (code, text)
    finally:
        c.close()

def test_auth_wrong_password_535(server):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("AUTH PLAIN " + plain_b64(BOB, "wrong-password"))
        assert code == 535 and text.startswith("5.7.8"), (code, text)
        code, text = c.cmd("MAIL FROM:<%s>" % BOB)
        assert code == 530, (code, text)
    finally:
        c.close()

def test_auth_unknown_user_535(server):
    c = tls_session(server.ports["submission"])
    try:
        code, text = c.cmd("AUTH PLAIN " + plain_b64("nobody@example.test", "whatever"))
        assert code == 535, (code, text)
    finally:
        c.close()
