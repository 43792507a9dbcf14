"""
End-to-end test fixtures: start the REAL mailroute binary with a temporary
configuration on free loopback ports and talk to it over sockets.

Binary: $MAILROUTE_BIN (the Makefile sets build-test/mailroute), else build/mailroute.

The server runs as root in CI and drops privileges to `mailroute`/`vmail`, so
every directory we hand it lives under /tmp in a 0755 directory we create
ourselves (never pytest's tmp_path, which is 0700).

Fixtures:
  tls_cert        session: (cert, key) self-signed EC certificate for CN=localhost
  server          session: one shared server (mx, submission, submissions), domain
                  example.test, users alice@ and bob@ (passwords in USERS)
  make_server     function: factory to start extra servers with other limits

Helpers: Server (start/stop/kill9/cli/maildir reading/wait_for_message), RawSMTP
(raw socket client that reads whole multi-line replies), unique_token().
"""
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOMAIN = "example.test"
HOSTNAME = "mx.example.test"
USERS = {
    "alice@example.test": "alice-Secret-1",
    "bob@example.test": "bob-Secret-2",
}
START_TIMEOUT = float(os.environ.get("E2E_START_TIMEOUT", "20"))
DELIVERY_TIMEOUT = float(os.environ.get("E2E_DELIVERY_TIMEOUT", "30"))
IO_TIMEOUT = 30.0
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                      "ERROR: UndefinedBehaviorSanitizer")

# Lines the crash test (and others) want printed at the end of the run.
SUMMARY_LINES = []


def mailroute_bin():
    b = os.environ.get("MAILROUTE_BIN")
    if b:
        return os.path.abspath(b)
    return os.path.join(REPO, "build", "mailroute")


def pytest_terminal_summary(terminalreporter):
    if SUMMARY_LINES:
        terminalreporter.section("mailroute e2e summary")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)


# Orphaned grandchildren of a killed server are re-parented to us (so the crash
# test can find and reap every mailroute process it started, and nothing else).
def _set_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:
        pass


_set_subreaper()


def make_tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_token_counter = itertools.count(1)


def unique_token(prefix="tok"):
    return "%s-%d-%s" % (prefix, next(_token_counter), uuid.uuid4().hex[:12])


def client_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until truthy; return its value or raise AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


# --------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------

def _proc_stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # pid (comm) state ppid pgrp session ...
    rpar = data.rfind(")")
    fields = data[rpar + 2:].split()
    return {"state": fields[0], "ppid": int(fields[1]), "pgrp": int(fields[2]), "sid": int(fields[3])}


def _all_pids():
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def process_tree(root_pid, session=None):
    """Pids of root_pid's descendants (and every process in `session`), live ones only."""
    stats = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st is not None and st["state"] != "Z":
            stats[pid] = st
    children = {}
    for pid, st in stats.items():
        children.setdefault(st["ppid"], []).append(pid)
    found = set()
    stack = [root_pid] if root_pid in stats else []
    if session is not None:
        stack += [p for p, st in stats.items() if st["sid"] == session]
    while stack:
        p = stack.pop()
        if p in found:
            continue
        found.add(p)
        stack.extend(children.get(p, []))
    return found


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass


# --------------------------------------------------------------------------
# raw SMTP client
# --------------------------------------------------------------------------

class ConnectionClosed(Exception):
    pass


class RawSMTP:
    """A byte-exact SMTP client: send() what you want, reply() reads one whole reply."""

    def __init__(self, port, host="127.0.0.1", tls=False, timeout=IO_TIMEOUT, source=None,
                 read_banner=True):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout
        if tls:
            self.sock = client_tls_context().wrap_socket(self.sock)
        self.banner = self.reply() if read_banner else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionClosed("server closed the connection; unread=%r" % self.buf)
        self.buf += chunk

    def readline(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """Return (code, text) of one reply; text joins the lines with \\n."""
        lines = []
        while True:
            line = self.readline()
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError("malformed reply line %r (previous %r)" % (line, lines))
            lines.append(line[4:].decode("utf-8", "replace"))
            if len(line) == 3 or line[3:4] == b" ":
                return int(line[:3]), "\n".join(lines)
            if line[3:4] != b"-":
                raise AssertionError("malformed reply line %r" % line)

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply()

    def ehlo(self, name="client.test"):
        code, text = self.cmd("EHLO " + name)
        assert code == 250, (code, text)
        return text

    def starttls(self):
        code, text = self.cmd("STARTTLS")
        assert code == 220, (code, text)
        assert self.buf == b"", "server sent bytes after 220 to STARTTLS: %r" % self.buf
        self.sock = client_tls_context().wrap_socket(self.sock)
        return self.sock

    def wait_closed(self, timeout=IO_TIMEOUT):
        """True if the server closes the connection within timeout (data before EOF is kept)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except (socket.timeout, TimeoutError):
            return False
        except ssl.SSLError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def build_message(token, sender="sender@client.test", to="alice@example.test", body=None,
                  extra_headers=""):
    """A small RFC 5322 message (CRLF line ends) carrying token in Subject and body."""
    if body is None:
        body = "Hello, this is message %s.\r\nSecond line.\r\n" % token
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@client.test>\r\n%s\r\n%s"
            % (sender, to, token, token, extra_headers, body))


def data_payload(message):
    """Dot-stuff and terminate a CRLF message for DATA."""
    if isinstance(message, str):
        message = message.encode()
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    lines = message.split(b"\r\n")
    stuffed = b"\r\n".join((b"." + l) if l.startswith(b".") else l for l in lines)
    return stuffed + b".\r\n"


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------

class Server:
    """One mailroute instance with its own config, data dir and ports."""

    live_masters = set()

    def __init__(self, tls_cert, name="srv", limits=None, extra_config="", smtp_processes=1,
                 kinds=("mx", "submission", "submissions")):
        self.bin = mailroute_bin()
        self.name = name
        self.root = make_tmpdir("mailroute-e2e-%s-" % name)
        self.data_dir = os.path.join(self.root, "data")
        self.config_path = os.path.join(self.root, "mailroute.yaml")
        self.stderr_path = os.path.join(self.root, "server.stderr")
        self.cert, self.key = tls_cert
        self.limits = dict(limits or {})
        self.extra_config = extra_config
        self.smtp_processes = smtp_processes
        self.ports = {k: free_port() for k in kinds}
        self.proc = None
        self.finished = False
        self.starts = 0
        self.env = dict(os.environ)
        self.env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.write_config()

    # -- config and CLI --------------------------------------------------
    def config_text(self):
        lines = [
            "hostname: %s" % HOSTNAME,
            'data_dir: "%s"' % self.data_dir,
            "listen:",
        ]
        for kind, port in self.ports.items():
            lines.append('  - { kind: %s, address: "127.0.0.1:%d" }' % (kind, port))
        lines.append('tls: { cert: "%s", key: "%s" }' % (self.cert, self.key))
        if self.smtp_processes:
            lines.append("smtp_processes: %d" % self.smtp_processes)
        if self.limits:
            lines.append("limits:")
            for k, v in self.limits.items():
                lines.append("  %s: %s" % (k, v))
        text = "\n".join(lines) + "\n"
        if self.extra_config:
            text += self.extra_config.rstrip("\n") + "\n"
        return text

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.config_text())
        os.chmod(self.config_path, 0o644)

    def cli(self, *args, input=None, check=True, timeout=60):
        cmd = [self.bin, "-c", self.config_path] + list(args)
        p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=self.env,
                           cwd=self.root)
        if check and p.returncode != 0:
            raise AssertionError("%s failed (exit %d):\nstdout: %s\nstderr: %s" % (
                " ".join(cmd), p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    def provision(self):
        self.cli("domain", "add", DOMAIN)
        for addr, pw in USERS.items():
            self.cli("user", "add", addr, input=(pw + "\n").encode())

    # -- lifecycle -------------------------------------------------------
    def start(self, timeout=START_TIMEOUT):
        if not os.path.exists(self.bin):
            pytest.fail("mailroute binary not found at %s (set MAILROUTE_BIN)" % self.bin)
        self.starts += 1
        errf = open(self.stderr_path, "ab")
        errf.write(b"\n=== start %d ===\n" % self.starts)
        errf.flush()
        self.proc = subprocess.Popen([self.bin, "serve", "-c", self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=errf, stderr=errf, env=self.env, cwd=self.root,
                                     start_new_session=True)
        errf.close()
        Server.live_masters.add(self.proc.pid)
        self.wait_ready(timeout)

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        pending = dict(self.ports)
        last_err = None
        while pending:
            if self.proc.poll() is not None:
                pytest.fail("mailroute serve exited with %s during start-up; stderr:\n%s"
                            % (self.proc.returncode, self.stderr_tail()))
            for kind, port in list(pending.items()):
                try:
                    c = RawSMTP(port, tls=(kind == "submissions"), timeout=5)
                    code, text = c.banner
                    c.send("QUIT\r\n")
                    c.close()
                    if code == 220:
                        del pending[kind]
                    else:
                        last_err = "banner %d %s" % (code, text)
                except (OSError, ConnectionClosed, AssertionError, ssl.SSLError) as e:
                    last_err = repr(e)
            if not pending:
                break
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("mailroute did not greet on %s within %.0fs (last: %s); stderr:\n%s"
                            % (pending, timeout, last_err, self.stderr_tail()))
            time.sleep(0.1)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=60):
        return "\n".join(self.stderr_text().splitlines()[-n:])

    def pids(self):
        """Every live process of this server (tree under the master, its session, orphans)."""
        if self.proc is None:
            return set()
        found = process_tree(self.proc.pid, session=self.proc.pid)
        # orphans re-parented to us (subreaper) that are no other server's master
        me = os.getpid()
        for pid in _all_pids():
            st = _proc_stat(pid)
            if st is None or st["state"] == "Z" or st["ppid"] != me:
                continue
            if pid in Server.live_masters and pid != self.proc.pid:
                continue
            try:
                exe = os.readlink("/proc/%d/exe" % pid)
            except OSError:
                continue
            if os.path.realpath(exe.replace(" (deleted)", "")) == os.path.realpath(self.bin):
                if pid != self.proc.pid and not self._is_other_servers(pid):
                    found |= process_tree(pid)
        return found

    def _is_other_servers(self, pid):
        st = _proc_stat(pid)
        return st is not None and st["sid"] in (Server.live_masters - {self.proc.pid})

    def kill9(self):
        """SIGKILL every process of this server, wait until all are gone. Returns how many."""
        killed = set()
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
            for pid in killed:
                _reap(pid)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            Server.live_masters.discard(self.proc.pid)
        wait_until(lambda: not self.pids(), 10, what="killed mailroute processes to vanish")
        for pid in killed:
            _reap(pid)
        return len(killed)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left (a hung child, or a master that ignored SIGTERM) is killed
        self.kill9()
        Server.live_masters.discard(self.proc.pid)

    def sanitizer_errors(self):
        text = self.stderr_text()
        hits = [l for l in text.splitlines() if any(p in l for p in SANITIZER_PATTERNS)]
        return hits

    def cleanup(self):
        if os.environ.get("E2E_KEEP"):
            return
        shutil.rmtree(self.root, ignore_errors=True)

    # -- mailboxes -------------------------------------------------------
    def maildir(self, address):
        local, domain = address.split("@", 1)
        return os.path.join(self.data_dir, "mail", domain.lower(), local.lower())

    def messages(self, address):
        """[(path, bytes)] of every message in new/ and cur/ of the user's INBOX."""
        out = []
        root = self.maildir(address)
        for sub in ("new", "cur"):
            d = os.path.join(root, sub)
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for n in names:
                p = os.path.join(d, n)
                try:
                    with open(p, "rb") as f:
                        out.append((p, f.read()))
                except OSError:
                    pass
        return out

    def find(self, address, token):
        t = token.encode() if isinstance(token, str) else token
        return [m for p, m in self.messages(address) if t in m]

    def wait_for_message(self, address, token, timeout=DELIVERY_TIMEOUT):
        """Wait until exactly one message containing token is in the Maildir; return it."""
        found = wait_until(lambda: self.find(address, token), timeout,
                           what="delivery of %s to %s (Maildir %s)" % (token, address,
                                                                      self.maildir(address)))
        assert len(found) == 1, "%d copies of %s delivered to %s" % (len(found), token, address)
        return found[0]

    def barrier(self, address="alice@example.test"):
        """Send a fresh message and wait for it: what was queued before is likely delivered."""
        token = unique_token("barrier")
        send_plain(self.ports["mx"], "barrier@client.test", [address], build_message(token, to=address))
        self.wait_for_message(address, token)

    def assert_absent(self, token, addresses=tuple(USERS)):
        for a in addresses:
            assert not self.find(a, token), "message %s must not be delivered to %s" % (token, a)


def send_plain(port, sender, rcpts, message, ehlo="client.test"):
    """Send one message over plain SMTP with raw sockets; return the final (code, text)."""
    with RawSMTP(port) as c:
        assert c.banner[0] == 220, c.banner
        c.ehlo(ehlo)
        code, text = c.cmd("MAIL FROM:<%s>" % sender)
        assert code == 250, (code, text)
        for r in rcpts:
            code, text = c.cmd("RCPT TO:<%s>" % r)
            assert code == 250, (r, code, text)
        code, text = c.cmd("DATA")
        assert code == 354, (code, text)
        c.send(data_payload(message))
        res = c.reply()
        c.send("QUIT\r\n")
        return res


QUEUED_RE = re.compile(r"^2\.0\.0 .*queued as \S+", re.IGNORECASE)


def header_block(msg):
    """The header part of a delivered message as text with unfolded lines."""
    head = msg.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in msg else msg.split(b"\n\n", 1)[0]
    text = head.decode("utf-8", "replace").replace("\r\n", "\n")
    return re.sub(r"\n[ \t]+", " ", text).split("\n")


def lf(data):
    """CRLF -> LF, so comparisons hold whichever line ending the Maildir file uses."""
    return data.replace(b"\r\n", b"\n")


def body_of(msg):
    """The body of a delivered message, LF line ends."""
    return lf(msg).split(b"\n\n", 1)[1]


def header_names(msg):
    return [l.split(":", 1)[0].lower() for l in header_block(msg) if ":" in l]


def swaks(*args, timeout=60):
    cmd = ["swaks", "--timeout", "30", "--hide-all"] + list(args)
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tls_cert():
    d = make_tmpdir("mailroute-e2e-tls-")
    cert = os.path.join(d, "cert.pem")
    key = os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
                    "-days", "2", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)
    yield cert, key
    shutil.rmtree(d, ignore_errors=True)


def finish_server(srv):
    """Stop srv, fail if its stderr holds sanitizer reports, remove its files if clean."""
    if srv.finished:
        return
    srv.finished = True
    srv.stop()
    errs = srv.sanitizer_errors()
    if not errs:
        srv.cleanup()
    assert not errs, "sanitizer reports in %s (kept in %s):\n%s" % (
        srv.stderr_path, srv.root, "\n".join(errs[:20]))


@pytest.fixture(scope="session")
def make_server(tls_cert):
    """Factory: make_server(name, limits={...}) -> started, provisioned Server.

    Stopped at session end unless a module fixture calls finish_server() earlier."""
    started = []

    def factory(name="srv", limits=None, extra_config="", smtp_processes=1, start=True, provision=True,
                **kw):
        srv = Server(tls_cert, name=name, limits=limits, extra_config=extra_config,
                     smtp_processes=smtp_processes, **kw)
        started.append(srv)
        if provision:
            srv.provision()
        if start:
            srv.start()
        return srv

    yield factory
    failures = []
    for srv in started:
        try:
            finish_server(srv)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="session")
def server(make_server):
    """The shared default server: generous limits, mx + submission + submissions."""
    return make_server("main", limits={"command_timeout": 120, "data_timeout": 120})
