"""IMAP and POP3 through the real `mailroute serve` (master, lookup, deliver roles):
mail sent over SMTP is read over IMAP and POP3, logins go through the lookup role."""
import imaplib
import os
import shutil
import subprocess
import tempfile
import poplib
import re
import socket
import ssl
import time

import pytest

import conftest
from conftest import USERS, Server, client_tls_context, finish_server, send_plain, unique_token

ALICE = "alice@example.test"
BOB = "bob@example.test"


class MailServer(Server):
    """The conftest Server with IMAP/POP3 listeners; readiness checks each protocol's greeting."""

    def __init__(self, tls_cert):
        super().__init__(tls_cert, name="imap", kinds=("mx", "imap", "imaps", "pop3", "pop3s"))

    def wait_ready(self, timeout=conftest.START_TIMEOUT):
        deadline = time.monotonic() + timeout
        pending = dict(self.ports)
        greet = {"mx": b"220", "imap": b"* OK", "imaps": b"* OK", "pop3": b"+OK", "pop3s": b"+OK"}
        while pending:
            if self.proc.poll() is not None:
                pytest.fail("mailroute serve exited during start-up:\n%s" % self.stderr_tail())
            for kind, port in list(pending.items()):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    if kind in ("imaps", "pop3s"):
                        s = client_tls_context().wrap_socket(s)
                    data = s.recv(512)
                    s.close()
                    if data.startswith(greet[kind]):
                        del pending[kind]
                except (OSError, ssl.SSLError):
                    pass
            if pending and time.monotonic() > deadline:
                self.stop()
                pytest.fail("no greeting on %s; stderr:\n%s" % (pending, self.stderr_tail()))
            time.sleep(0.1)


@pytest.fixture(scope="module")
def msrv(tls_cert):
    s = MailServer(tls_cert)
    s.provision()
    s.start()
    yield s
    finish_server(s)


def imap_login(srv, user=ALICE):
    m = imaplib.IMAP4(srv_host(), srv.ports["imap"])
    m.starttls(ssl_context=client_tls_context())
    assert m.login(user, USERS[user])[0] == "OK"
    return m


def srv_host():
    return "127.0.0.1"


def deliver(srv, to, subject):
    token = unique_token("imap")
    msg = "From: sender@example.org\r\nTo: %s\r\nSubject: %s %s\r\n\r\nbody %s\r\n" % (to, subject, token, token)
    send_plain(srv.ports["mx"], "sender@example.org", [to], msg)
    return token


def test_smtp_to_imap_and_pop3(msrv):
    token = deliver(msrv, ALICE, "hello")
    msrv.wait_for_message(ALICE, token)
    m = imap_login(msrv)
    typ, data = m.select("INBOX")
    typ, data = m.search(None, "BODY", '"%s"' % token)
    assert typ == "OK" and data[0], data
    seq = data[0].split()[-1]
    typ, data = m.fetch(seq, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert token.encode() in data[0][1]
    m.logout()
    p = poplib.POP3(srv_host(), msrv.ports["pop3"], timeout=10)
    p.stls(context=client_tls_context())
    p.user(ALICE)
    p.pass_(USERS[ALICE])
    n, _ = p.stat()
    found = any(token.encode() in b"\r\n".join(p.retr(i + 1)[1]) for i in range(n))
    assert found
    p.quit()


def test_imap_idle_sees_smtp_delivery(msrv):
    m = imaplib.IMAP4_SSL(srv_host(), msrv.ports["imaps"], ssl_context=client_tls_context())
    m.login(BOB, USERS[BOB])
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    token = deliver(msrv, BOB, "idle")
    m.sock.settimeout(conftest.DELIVERY_TIMEOUT)
    line = m.readline()
    t_exists = time.time()
    assert re.match(rb"\* \d+ EXISTS", line), line
    msrv.wait_for_message(BOB, token)
    # the session learnt of the message within a second of its landing in the Maildir
    paths = [p for p, data in msrv.messages(BOB) if token.encode() in data]
    assert len(paths) == 1
    assert t_exists - os.stat(paths[0]).st_mtime < 1.0
    m.send(b"DONE\r\n")
    while not m.readline().startswith(tag):
        pass
    m.logout()


def test_wrong_password_and_no_password_in_log(msrv):
    m = imaplib.IMAP4(srv_host(), msrv.ports["imap"])
    m.starttls(ssl_context=client_tls_context())
    with pytest.raises(imaplib.IMAP4.error):
        m.login(ALICE, "not-the-Secret-9")
    assert m.login(ALICE, USERS[ALICE])[0] == "OK"
    m.logout()
    text = msrv.stderr_text()
    assert "not-the-Secret-9" not in text and USERS[ALICE] not in text
    assert "event=imap_login" in text


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_through_real_server(msrv, tls_cert):
    """mbsync pulls a mailbox the deliver role filled (plus files dropped in new/), pushes
    local changes back, and a second run changes nothing."""
    user = "bob@example.test"
    token = deliver(msrv, user, "mbsync")
    msrv.wait_for_message(user, token)
    new = os.path.join(msrv.maildir(user), "new")
    for i in range(200):
        with open(os.path.join(new, "%d.mb%d.testhost" % (1700000000 + i, i)), "w") as f:
            f.write("From: a@b.test\nSubject: bulk %d\n\nbody %d\n" % (i, i))
    d = tempfile.mkdtemp(prefix="mr-mbsync-", dir="/tmp")
    try:
        rc = os.path.join(d, "rc")
        with open(rc, "w") as f:
            f.write("IMAPAccount a\nHost localhost\nPort %d\nUser %s\nPass %s\nSSLType IMAPS\nCertificateFile %s\n\n"
                    "IMAPStore r\nAccount a\n\nMaildirStore l\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n"
                    "Channel c\nFar :r:\nNear :l:\nPatterns INBOX\nCreate Both\nSync All\nSyncState *\nExpunge Both\n"
                    % (msrv.ports["imaps"], user, USERS[user], tls_cert[0], d, d))

        def sync():
            p = subprocess.run(["mbsync", "-c", rc, "c"], capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stdout + p.stderr

        sync()
        local = os.path.join(d, "INBOX")
        files = os.listdir(os.path.join(local, "new")) + os.listdir(os.path.join(local, "cur"))
        assert len(files) >= 201
        with open(os.path.join(local, "new", "1.local.host"), "w") as f:
            f.write("Subject: from mbsync\n\nx\n")
        sync()
        m = imap_login(msrv, user)
        m.select("INBOX")
        assert m.search(None, "SUBJECT", '"from mbsync"')[1][0]
        typ, st = m.status("INBOX", "(MESSAGES HIGHESTMODSEQ)")
        m.logout()
        snapshot = sorted(os.listdir(os.path.join(local, "cur")) + os.listdir(os.path.join(local, "new")))
        sync()
        assert sorted(os.listdir(os.path.join(local, "cur")) + os.listdir(os.path.join(local, "new"))) == snapshot
        m = imap_login(msrv, user)
        assert m.status("INBOX", "(MESSAGES HIGHESTMODSEQ)")[1] == st
        m.logout()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_mailbox_cli(msrv):
    token = deliver(msrv, ALICE, "cli")
    msrv.wait_for_message(ALICE, token)
    out = msrv.cli("mailbox", "sync", ALICE).stdout.decode()
    lines = out.splitlines()
    assert lines[0].startswith("INBOX messages=") and any(l.startswith("Trash ") for l in lines), out
    inbox = dict(kv.split("=") for kv in lines[0].split()[1:])
    assert int(inbox["messages"]) >= 1
    out = msrv.cli("mailbox", "rebuild", ALICE, "Trash").stdout.decode()
    assert out.startswith("Trash messages=0 ")
    p = msrv.cli("mailbox", "list", "../../etc@x", check=False)
    assert p.returncode == 2
    p = msrv.cli("mailbox", "list", "nobody@example.test", check=False)
    assert p.returncode == 1


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_through_real_server(msrv):
    user = "bob@example.test"
    token = deliver(msrv, user, "fetchmail")
    msrv.wait_for_message(user, token)
    d = tempfile.mkdtemp(prefix="mr-fetchmail-", dir="/tmp")
    try:
        out = os.path.join(d, "out.bsmtp")
        rc = os.path.join(d, "rc")
        with open(rc, "w") as f:
            f.write('set no syslog\npoll localhost with proto POP3 port %d auth password\n'
                    '  user "%s" there with password "%s" is "root" here\n'
                    "  sslproto 'TLS1.2+' no sslcertck\n  bsmtp \"%s\"\n" % (msrv.ports["pop3"], user, USERS[user], out))
        os.chmod(rc, 0o600)
        p = subprocess.run(["fetchmail", "-f", rc, "--pidfile", os.path.join(d, "pid"), "-i", os.path.join(d, "ids"),
                            "-v"], capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=d))
        assert p.returncode == 0, p.stdout + p.stderr
        assert "STLS" in p.stdout + p.stderr
        with open(out) as f:
            assert token in f.read()
        assert msrv.find(user, token) == []
    finally:
        shutil.rmtree(d, ignore_errors=True)
