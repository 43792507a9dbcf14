"""POP3 end to end against the real session code (imap-testd; see test_imap_support.py)."""
import base64
import os
import socket
import poplib
import time

import pytest

from test_imap_support import USERS, MailTestd, Raw, tls_client_ctx

JOE = "joe@example.test"
ANN = "ann@example.test"


@pytest.fixture(scope="module")
def srv():
    s = MailTestd(plaintext=False)
    yield s
    assert s.alive(), "imap-testd died"
    s.stop()


def pop(srv, user=JOE):
    p = poplib.POP3(srv.host, srv.ports["pop3"], timeout=10)
    p.stls(context=tls_client_ctx())
    p.user(user)
    p.pass_(USERS[user])
    return p


def fill(srv, user, n):
    names = []
    for i in range(n):
        names.append(srv.deliver(user, "From: a@b.test\nSubject: pop %d\n\nline one\n.dot line\nline three\n" % i,
                                 name="%d.pop%d.testhost" % (1700000000 + i, i)))
    return names


def test_user_pass_needs_tls(srv):
    p = poplib.POP3(srv.host, srv.ports["pop3"], timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.user(JOE)
    p.stls(context=tls_client_ctx())
    caps = p.capa()
    assert "USER" in caps and "STLS" not in caps and "SASL" in caps
    p.user(JOE)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_("wrong")
    p.quit()


def test_retrieve_top_uidl_and_delete_at_quit(srv):
    fill(srv, JOE, 3)
    p = pop(srv)
    count, size = p.stat()
    assert count == 3
    resp, lines, octets = p.retr(1)
    assert lines == [b"From: a@b.test", b"Subject: pop 0", b"", b"line one", b".dot line", b"line three"]
    resp, lines, _ = p.top(2, 1)
    assert lines == [b"From: a@b.test", b"Subject: pop 1", b"", b"line one"]
    resp, uidls, _ = p.uidl()
    uids = [u.split()[1] for u in uidls]
    assert len(set(uids)) == 3
    resp, listing, _ = p.list()
    assert len(listing) == 3 and all(int(l.split()[1]) > 0 for l in listing)
    p.dele(1)
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    assert p.stat()[0] == 2
    # nothing removed until QUIT
    assert len(os.listdir(os.path.join(srv.maildir(JOE), "cur"))) == 3
    p.quit()
    assert len(os.listdir(os.path.join(srv.maildir(JOE), "cur"))) == 2
    # UIDLs are stable across sessions
    p = pop(srv)
    resp, uidls2, _ = p.uidl()
    assert [u.split()[1] for u in uidls2] == uids[1:]
    p.rset()
    p.quit()


def test_disconnect_without_quit_deletes_nothing(srv):
    fill(srv, ANN, 2)
    p = pop(srv, ANN)
    n = p.stat()[0]
    p.dele(1)
    p.sock.shutdown(2)
    p.close()
    time.sleep(0.3)
    p = pop(srv, ANN)
    assert p.stat()[0] == n
    p.quit()


def test_maildrop_lock(srv):
    p1 = pop(srv, ANN)
    p2 = poplib.POP3(srv.host, srv.ports["pop3"], timeout=10)
    p2.stls(context=tls_client_ctx())
    p2.user(ANN)
    with pytest.raises(poplib.error_proto, match="IN-USE"):
        p2.pass_(USERS[ANN])
    p1.quit()
    p2.user(ANN)
    assert p2.pass_(USERS[ANN]).startswith(b"+OK")
    p2.quit()


def test_pop3s_and_sasl_plain(srv):
    p = poplib.POP3_SSL(srv.host, srv.ports["pop3s"], context=tls_client_ctx(), timeout=10)
    ir = base64.b64encode(("\0%s\0%s" % (JOE, USERS[JOE])).encode()).decode()
    resp = p._shortcmd("AUTH PLAIN " + ir)
    assert resp.startswith(b"+OK")
    assert p.stat()[0] >= 0
    p.quit()
    r = Raw(srv.host, srv.ports["pop3s"], tls=True)
    r.line()
    r.send("AUTH PLAIN\r\n")
    assert r.line().startswith("+")
    r.send(base64.b64encode(("\0%s\0wrong" % JOE).encode()).decode() + "\r\n")
    assert r.line().startswith("-ERR [AUTH]")
    r.close()


def test_bad_input(srv):
    r = Raw(srv.host, srv.ports["pop3s"], tls=True)
    r.line()
    for cmd in ("STAT", "RETR 1", "LIST", "FOO", "USER", "TOP 1", "US\xe9R x"):
        r.send(cmd.encode("latin-1") + b"\r\n")
        assert r.line().startswith("-ERR"), cmd
    r.send(b"x" * 5000 + b"\r\n")
    assert r.line().startswith("-ERR")
    r.close()
    r = Raw(srv.host, srv.ports["pop3s"], tls=True)
    r.line()
    for i in range(12):
        r.send("BOGUS\r\n")
    lines = [r.line() for _ in range(11)]
    assert all(l.startswith("-ERR") for l in lines if l)
    assert r.closed()
    p = pop(srv)
    for bad in ("RETR 0", "RETR 999", "DELE x", "TOP 1 -1", "LIST 1 2"):
        with pytest.raises(poplib.error_proto):
            p._shortcmd(bad)
    p.quit()
    assert srv.alive()


def test_large_retr_over_stls(srv):
    srv.deliver(JOE, "Subject: big\r\n\r\n" + ("z" * 998 + "\r\n") * 3000, name="1790000000.big.testhost")
    p = pop(srv)
    resp, uidls, _ = p.uidl()
    n = [u.split()[0] for u in uidls if u.split()[1] == b"1790000000.big.testhost"][0]
    resp, lines, octets = p.retr(int(n))
    assert len(lines) == 3002 and octets > 3000000
    p.quit()
