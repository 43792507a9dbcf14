"""ManageSieve (RFC 5804) through the real `mailroute serve`: STARTTLS + AUTHENTICATE PLAIN
against the lookup role, scripts in the sieve store, and delivery applying the active
script. A raw-socket client, and the real sieve-connect when it is installed."""
import base64
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import time
import types

import pytest

import conftest
from conftest import USERS, client_tls_context, finish_server, send_plain, unique_token

ALICE = "alice@example.test"
BOB = "bob@example.test"
KINDS = ("mx", "submission", "submissions", "managesieve")

FILTER = (b'require "fileinto";\r\n'
          b'if header :contains "subject" "sieve-test" {\r\n'
          b'  fileinto "Filtered";\r\n'
          b'}\r\n')


def _wait_ready(self, timeout=conftest.START_TIMEOUT):
    """Readiness by each protocol's greeting (the conftest default only knows SMTP)."""
    deadline = time.monotonic() + timeout
    pending = dict(self.ports)
    while pending:
        if self.proc.poll() is not None:
            pytest.fail("mailroute serve exited during start-up:\n%s" % self.stderr_tail())
        for kind, port in list(pending.items()):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if kind == "submissions":
                    s = client_tls_context().wrap_socket(s)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                s.close()
                if data.startswith(b'"IMPLEMENTATION"' if kind == "managesieve" else b"220"):
                    del pending[kind]
            except (OSError, ssl.SSLError):
                pass
        if pending and time.monotonic() > deadline:
            self.stop()
            pytest.fail("no greeting on %s; stderr:\n%s" % (pending, self.stderr_tail()))
        time.sleep(0.1)


@pytest.fixture(scope="module")
def msrv(make_server):
    s = make_server("msieve", kinds=KINDS, start=False)
    s.wait_ready = types.MethodType(_wait_ready, s)
    s.start()
    yield s
    finish_server(s)


class Sieve:
    """A byte-exact ManageSieve client: response() reads lines up to OK/NO/BYE."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.response()

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed; unread=%r" % self.buf)
        self.buf += chunk

    def _read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def readline(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        m = re.search(rb"\{(\d+)\}$", line)
        if m:  # a literal: its bytes, then the rest of the line
            line += b"\r\n" + self._read(int(m.group(1))) + self.readline()
        return line

    def response(self):
        """(final line, [data lines]) of one response."""
        lines = []
        while True:
            line = self.readline()
            if re.match(rb"^(OK|NO|BYE)( |$)", line):
                return line.decode("utf-8", "replace"), lines
            lines.append(line)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.response()

    def starttls(self):
        final, _ = self.cmd("STARTTLS")
        assert final.startswith("OK"), final
        self.sock = client_tls_context().wrap_socket(self.sock)
        self.buf = b""
        final, caps = self.response()
        assert final.startswith("OK"), final
        return caps

    def login(self, user=ALICE, password=None):
        pw = USERS[user] if password is None else password
        b64 = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
        return self.cmd('AUTHENTICATE "PLAIN" "%s"' % b64)[0]

    def putscript(self, name, script):
        self.send(b'PUTSCRIPT "%s" {%d+}\r\n' % (name.encode(), len(script)) + script + b"\r\n")
        return self.response()[0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def session(srv, user=ALICE):
    c = Sieve(srv.ports["managesieve"])
    c.starttls()
    assert c.login(user).startswith("OK"), user
    return c


def test_capabilities_starttls_and_auth(msrv):
    c = Sieve(msrv.ports["managesieve"])
    final, caps = c.greeting
    assert final.startswith("OK"), final
    assert b'"IMPLEMENTATION" "mailroute"' in caps
    assert b'"VERSION" "1.0"' in caps
    assert b'"STARTTLS"' in caps
    sieve = [l for l in caps if l.startswith(b'"SIEVE" ')]
    assert sieve and b"fileinto" in sieve[0] and b"vacation" in sieve[0]
    # no PLAIN outside TLS (auth_allow_plaintext is off)
    assert b'"SASL" ""' in caps
    assert c.login().startswith("NO (ENCRYPT-NEEDED)")
    # plaintext pipelined after STARTTLS is discarded, never run inside TLS
    c.send("STARTTLS\r\nLISTSCRIPTS\r\n")
    final, _ = c.response()
    assert final.startswith("OK"), final
    c.sock = client_tls_context().wrap_socket(c.sock)
    c.buf = b""
    final, caps = c.response()
    assert final.startswith("OK")
    assert b'"SASL" "PLAIN"' in caps and b'"STARTTLS"' not in caps
    assert c.cmd("NOOP")[0].startswith("OK"), "the pipelined LISTSCRIPTS must not have run"
    assert c.login(password="wrong").startswith("NO")
    # SASL continuation: empty challenge, then the response as a literal
    b64 = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + USERS[ALICE].encode())
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.readline() == b'""'
    c.send(b"{%d+}\r\n%s\r\n" % (len(b64), b64))
    final, _ = c.response()
    assert final.startswith("OK"), final
    final, caps = c.cmd("CAPABILITY")
    assert b'"OWNER" "alice@example.test"' in caps
    assert c.cmd("LOGOUT")[0].startswith("OK")
    c.close()


def test_putscript_setactive_filters_delivery(msrv):
    c = session(msrv)
    assert c.putscript("filter", FILTER) == "OK"
    assert c.putscript("other", b"keep;\r\n") == "OK"
    assert c.cmd('SETACTIVE "filter"')[0].startswith("OK")
    final, lines = c.cmd("LISTSCRIPTS")
    assert final == "OK"
    assert b'"filter" ACTIVE' in lines and b'"other"' in lines
    final, lines = c.cmd('GETSCRIPT "filter"')
    assert final == "OK"
    assert lines[0] == b"{%d}\r\n" % len(FILTER) + FILTER
    # the active script cannot be deleted; another can
    assert c.cmd('DELETESCRIPT "filter"')[0].startswith("NO (ACTIVE)")
    assert c.cmd('DELETESCRIPT "other"')[0] == "OK"
    assert c.cmd('DELETESCRIPT "other"')[0].startswith("NO (NONEXISTENT)")
    c.cmd("LOGOUT")
    c.close()

    # the store: <data_dir>/sieve/<domain>/<local>/, owned by vmail
    d = os.path.join(msrv.data_dir, "sieve", "example.test", "alice")
    assert os.path.islink(os.path.join(d, "active"))
    assert os.readlink(os.path.join(d, "active")) == "filter.sieve"
    if os.geteuid() == 0:
        assert os.stat(os.path.join(d, "filter.sieve")).st_uid == pwd.getpwnam("vmail").pw_uid

    token = unique_token("sieve")
    msg = ("From: sender@example.org\r\nTo: %s\r\nSubject: sieve-test %s\r\n\r\nbody %s\r\n"
           % (ALICE, token, token))
    code, text = send_plain(msrv.ports["mx"], "sender@example.org", [ALICE], msg)
    assert code == 250, (code, text)
    folder = os.path.join(msrv.maildir(ALICE), ".Filtered", "new")

    def filed():
        try:
            for n in os.listdir(folder):
                with open(os.path.join(folder, n), "rb") as f:
                    if token.encode() in f.read():
                        return True
        except OSError:
            pass
        return False

    conftest.wait_until(filed, conftest.DELIVERY_TIMEOUT, what="delivery into %s" % folder)
    assert not msrv.find(ALICE, token), "a filed message must not also be in INBOX"
    # other mail still lands in INBOX
    other = unique_token("plain")
    send_plain(msrv.ports["mx"], "sender@example.org", [ALICE],
               "From: s@example.org\r\nSubject: hello %s\r\n\r\nx\r\n" % other)
    msrv.wait_for_message(ALICE, other)


def test_broken_script_is_refused_with_line_col(msrv):
    c = session(msrv, BOB)
    final = c.putscript("broken", b'require "fileinto";\r\nif header :is "subject" {\r\n  keep;\r\n}\r\n')
    assert re.match(r'^NO "2:\d+: .+"$', final), final
    final = c.putscript("unknown", b'keep;\r\nfoo "x";\r\n')
    assert re.match(r'^NO "2:\d+: .+"$', final), final
    final, _ = c.cmd('CHECKSCRIPT "frobnicate;"')
    assert re.match(r'^NO "1:1: .+"$', final), final
    assert c.cmd('CHECKSCRIPT "keep;"')[0] == "OK"
    final, lines = c.cmd("LISTSCRIPTS")
    assert final == "OK" and lines == []
    # names the store cannot hold, a missing script, rename rules
    assert c.putscript("../evil", b"keep;") .startswith("NO")
    assert c.cmd('SETACTIVE "nope"')[0].startswith("NO (NONEXISTENT)")
    assert c.putscript("a", b"keep;") == "OK"
    assert c.putscript("b", b"stop;") == "OK"
    assert c.cmd('RENAMESCRIPT "a" "b"')[0].startswith("NO (ALREADYEXISTS)")
    assert c.cmd('SETACTIVE "a"')[0].startswith("OK")
    assert c.cmd('RENAMESCRIPT "a" "c"')[0] == "OK"
    final, lines = c.cmd("LISTSCRIPTS")
    assert lines == [b'"b"', b'"c" ACTIVE'], lines
    assert c.cmd('HAVESPACE "x" 2000000')[0].startswith("NO (QUOTA/MAXSIZE)")
    assert c.cmd('HAVESPACE "x" 2000')[0] == "OK"
    assert c.cmd('SETACTIVE ""')[0].startswith("OK")
    c.cmd("LOGOUT")
    c.close()


def test_bad_input_closes(msrv):
    c = Sieve(msrv.ports["managesieve"])
    # a literal length beyond 2^32-1: BYE and close
    c.send('PUTSCRIPT "a" {99999999999+}\r\n')
    final, _ = c.response()
    assert final.startswith("BYE"), final
    with pytest.raises(ConnectionError):
        c.readline()
    c.close()
    # too many errors
    c = Sieve(msrv.ports["managesieve"])
    final = None
    for _ in range(20):
        final, _ = c.cmd("BOGUS")
        if final.startswith("BYE"):
            break
        assert final.startswith("NO"), final
    assert final.startswith("BYE"), final
    c.close()


def test_sieve_connect_uploads_and_activates(msrv, tmp_path):
    if shutil.which("sieve-connect") is None:
        pytest.skip("sieve-connect is not installed (scripts/install-deps)")
    script = tmp_path / "vacation.sieve"
    script.write_bytes(b'require "fileinto";\nif header :contains "subject" "sc-test" { fileinto "SC"; }\n')
    base = ["sieve-connect", "--server", "127.0.0.1", "--port", str(msrv.ports["managesieve"]),
            "--user", BOB, "--passwordfd", "0", "--notlsverify", "--authmech", "PLAIN"]

    def run(*args):
        p = subprocess.run(base + list(args), input=(USERS[BOB] + "\n").encode(), capture_output=True,
                           timeout=60)
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
        return p.stdout.decode("utf-8", "replace")

    run("--upload", "--localsieve", str(script), "--remotesieve", "sc")
    run("--activate", "--remotesieve", "sc")
    listing = run("--list")
    assert re.search(r'^"sc" ACTIVE$', listing, re.M), listing
    d = os.path.join(msrv.data_dir, "sieve", "example.test", "bob")
    with open(os.path.join(d, "sc.sieve"), "rb") as f:
        assert f.read() == script.read_bytes()
    assert os.readlink(os.path.join(d, "active")) == "sc.sieve"
    out = tmp_path / "back.sieve"
    run("--download", "--remotesieve", "sc", "--localsieve", str(out))
    assert out.read_bytes() == script.read_bytes()
    run("--deactivate")
    assert not os.path.lexists(os.path.join(d, "active"))
