"""
Shared helpers for the IMAP/POP3 end-to-end tests (no tests here).

`mailsrv` starts imap-testd: the real IMAP and POP3 session code with a stub password
check (users in USERS), on ephemeral 127.0.0.1 ports, with a self-signed certificate.
Binary: $IMAP_TESTD, else imap-testd beside $MAILROUTE_BIN, else build-test/ or build/.
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USERS = {"joe@example.test": "joe-Secret-1", "ann@example.test": "ann-Secret-2"}


def testd_bin():
    if os.environ.get("IMAP_TESTD"):
        return os.environ["IMAP_TESTD"]
    if os.environ.get("MAILROUTE_BIN"):
        c = os.path.join(os.path.dirname(os.path.abspath(os.environ["MAILROUTE_BIN"])), "imap-testd")
        if os.access(c, os.X_OK):
            return c
    cands = [os.path.join(REPO, d, "imap-testd") for d in ("build-test", "build", "build-imap")]
    cands = [c for c in cands if os.access(c, os.X_OK)]
    # the most recently built one
    return max(cands, key=os.path.getmtime) if cands else None


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def tls_client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class MailTestd:
    def __init__(self, plaintext=False):
        b = testd_bin()
        if b is None:
            pytest.skip("imap-testd not built")
        self.dir = tempfile.mkdtemp(prefix="mr-imap-e2e-", dir="/tmp")
        self.mail_root = os.path.join(self.dir, "mail")
        os.makedirs(self.mail_root)
        cert, key = make_cert(self.dir)
        self.cert = cert
        args = [b, "--mail-root", self.mail_root, "--cert", cert, "--key", key]
        for u, p in USERS.items():
            args += ["--user", "%s:%s" % (u, p)]
        if plaintext:
            args.append("--plaintext")
        self.log_path = os.path.join(self.dir, "testd.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        ports = dict(kv.split("=") for kv in line.split())
        self.ports = {k: int(v) for k, v in ports.items()}
        self.host = "127.0.0.1"

    def maildir(self, user):
        local, domain = user.split("@")
        return os.path.join(self.mail_root, domain, local)

    def deliver(self, user, content, folder=None, name=None):
        """Write a message into new/ the way the deliver role does (tmp, then rename)."""
        root = self.maildir(user)
        if folder:
            root = os.path.join(root, "." + folder)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        name = name or "%d.M%dP%d.testhost" % (time.time(), time.time_ns() % 1000000, os.getpid())
        tmp = os.path.join(root, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
        os.rename(tmp, os.path.join(root, "new", name))
        return name

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def asan(self):
        with open("/proc/%d/maps" % self.proc.pid) as f:
            return "libasan" in f.read()

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        text = open(self.log_path).read()
        for pat in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"):
            assert pat not in text, text[-4000:]
        shutil.rmtree(self.dir, ignore_errors=True)


class Raw:
    """Line-oriented raw client for malformed-input tests."""

    def __init__(self, host, port, tls=False):
        self.sock = socket.create_connection((host, port), timeout=10)
        if tls:
            self.sock = tls_client_ctx().wrap_socket(self.sock)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                r, self.buf = self.buf, b""
                return r.decode(errors="replace") if r else None
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode(errors="replace")

    def until(self, prefix):
        lines = []
        while True:
            l = self.line()
            if l is None:
                return lines
            lines.append(l)
            if l.startswith(prefix):
                return lines

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
