"""Real clients against the real session code (imap-testd): mbsync (isync) over IMAPS and
fetchmail over POP3 with STLS."""
import os
import re
import shutil
import subprocess
import time

import imaplib
import pytest

from test_imap_support import USERS, MailTestd, tls_client_ctx

JOE = "joe@example.test"


@pytest.fixture()
def srv():
    s = MailTestd(plaintext=False)
    yield s
    assert s.alive(), "imap-testd died"
    s.stop()


def fill_server(srv, n):
    root = srv.maildir(JOE)
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(n):
        with open(os.path.join(root, "new", "%d.M%d.host" % (1700000000 + i, i)), "w") as f:
            f.write("From: a@b.test\nSubject: m%d\nMessage-ID: <m%d@x>\n\nbody %d\n" % (i, i, i))


def tree(path):
    """{relative file name: size} of every message file under a Maildir tree."""
    out = {}
    for dirpath, _, files in os.walk(path):
        if os.path.basename(dirpath) not in ("cur", "new"):
            continue
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, path)] = os.path.getsize(p)
    return out


def server_status(srv):
    m = imaplib.IMAP4_SSL(srv.host, srv.ports["imaps"], ssl_context=tls_client_ctx())
    m.login(JOE, USERS[JOE])
    typ, data = m.status("INBOX", "(MESSAGES HIGHESTMODSEQ UIDNEXT)")
    m.logout()
    return data[0]


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_round_trip(srv):
    fill_server(srv, 1000)
    local = os.path.join(srv.dir, "local")
    os.makedirs(local)
    rc = os.path.join(srv.dir, "mbsyncrc")
    with open(rc, "w") as f:
        f.write("""IMAPAccount acc
Host localhost
Port %d
User %s
Pass %s
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account acc

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns *
Create Both
Sync All
SyncState *
Expunge Both
""" % (srv.ports["imaps"], JOE, USERS[JOE], srv.cert, local, local))

    def sync():
        p = subprocess.run(["mbsync", "-c", rc, "ch"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return p

    sync()
    inbox = os.path.join(local, "INBOX")
    assert len([f for f in tree(inbox)]) == 1000
    for special in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert os.path.isdir(os.path.join(local, special))
    # change things locally: flag one, delete one (flag T + expunge), add two, create a folder
    cur = os.path.join(inbox, "cur")
    new = os.path.join(inbox, "new")
    names = sorted(os.listdir(new)) + sorted(os.listdir(cur))
    first = names[0]
    d = new if first in os.listdir(new) else cur
    base, _, fl = first.partition(":2,")
    os.rename(os.path.join(d, first), os.path.join(cur, base + ":2," + "".join(sorted(set(fl + "FS")))))
    os.unlink(os.path.join(d if names[1] in os.listdir(d) else cur, names[1]))
    for i in range(2):
        with open(os.path.join(new, "%d.local%d.host" % (time.time(), i)), "w") as f:
            f.write("From: me@example.test\nSubject: local %d\n\nfrom the client\n" % i)
    os.makedirs(os.path.join(local, "Project", "cur"))
    os.makedirs(os.path.join(local, "Project", "new"))
    os.makedirs(os.path.join(local, "Project", "tmp"))
    with open(os.path.join(local, "Project", "new", "1.proj.host"), "w") as f:
        f.write("Subject: project\n\nx\n")
    sync()
    m = imaplib.IMAP4_SSL(srv.host, srv.ports["imaps"], ssl_context=tls_client_ctx())
    m.login(JOE, USERS[JOE])
    typ, data = m.select("INBOX")
    assert data == [b"1001"]
    assert m.search(None, "FLAGGED")[1][0].split() != []
    assert len(m.search(None, "SUBJECT", '"local "')[1][0].split()) == 2
    typ, data = m.select("Project")
    assert data == [b"1"]
    m.logout()
    # a second sync changes nothing on either side
    before_local, before_server = tree(local), server_status(srv)
    before_remote = tree(srv.maildir(JOE))
    sync()
    assert tree(local) == before_local
    assert tree(srv.maildir(JOE)) == before_remote
    assert server_status(srv) == before_server


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_stls_retrieves_and_deletes(srv):
    fill_server(srv, 25)
    out = os.path.join(srv.dir, "out.bsmtp")
    rc = os.path.join(srv.dir, "fetchmailrc")
    with open(rc, "w") as f:
        f.write('set no syslog\npoll localhost with proto POP3 port %d auth password\n'
                '  user "%s" there with password "%s" is "root" here\n'
                "  sslproto 'TLS1.2+' no sslcertck\n  bsmtp \"%s\"\n" % (srv.ports["pop3"], JOE, USERS[JOE], out))
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=srv.dir)
    p = subprocess.run(["fetchmail", "-f", rc, "--pidfile", os.path.join(srv.dir, "fm.pid"),
                        "-i", os.path.join(srv.dir, "fm.ids"), "-v"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "STLS" in p.stdout + p.stderr
    with open(out) as f:
        text = f.read()
    assert len(re.findall(r"^MAIL FROM", text, re.M)) == 25
    assert "Subject: m24" in text
    assert tree(srv.maildir(JOE)) == {}
    # nothing left: a second run finds no mail (exit 1 = no mail)
    p = subprocess.run(["fetchmail", "-f", rc, "--pidfile", os.path.join(srv.dir, "fm.pid"),
                        "-i", os.path.join(srv.dir, "fm.ids")], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 1, p.stdout + p.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_imap_and_pop3(srv):
    fill_server(srv, 3)
    user = "%s:%s" % (JOE, USERS[JOE])

    def curl(*args, data=None):
        p = subprocess.run(["curl", "-s", "-S", "-k", "-u", user] + list(args), input=data,
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout.decode()

    out = curl("--ssl-reqd", "imap://127.0.0.1:%d/" % srv.ports["imap"])
    assert '"." INBOX' in out and "\\Drafts" in out
    out = curl("imaps://127.0.0.1:%d/INBOX;UID=2" % srv.ports["imaps"])
    assert "Subject: m1" in out
    eml = os.path.join(srv.dir, "m.eml")
    with open(eml, "wb") as f:
        f.write(b"Subject: via curl\r\n\r\nhi\r\n")
    curl("-T", eml, "imaps://127.0.0.1:%d/Drafts" % srv.ports["imaps"])
    out = curl("-X", "SEARCH SUBJECT curl", "imaps://127.0.0.1:%d/Drafts" % srv.ports["imaps"])
    assert out.strip() == "* SEARCH 1"
    out = curl("--ssl-reqd", "pop3://127.0.0.1:%d/" % srv.ports["pop3"])
    assert len(out.strip().splitlines()) == 3
    out = curl("pop3s://127.0.0.1:%d/3" % srv.ports["pop3s"])
    assert "Subject: m2" in out
