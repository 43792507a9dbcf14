"""The command line: check-config errors as file:line:col, exit codes, misuse -> one line + exit 2."""
import os
import re
import shutil
import socket
import subprocess

import pytest

import signal
import time

from conftest import finish_server, make_tmpdir, mailroute_bin

ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0")


@pytest.fixture(scope="module")
def workdir():
    d = make_tmpdir("mailroute-e2e-cli-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run(args, cwd=None, input=None, timeout=60):
    b = mailroute_bin()
    if not os.path.exists(b):
        pytest.fail("mailroute binary not found at %s (set MAILROUTE_BIN)" % b)
    return subprocess.run([b] + args, capture_output=True, timeout=timeout, env=ENV, cwd=cwd, input=input)


def write(workdir, name, text):
    p = os.path.join(workdir, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def valid_config(workdir, name="valid.yaml"):
    data = os.path.join(workdir, "data-" + name.split(".")[0])
    return write(workdir, name, """\
hostname: mx.example.test
data_dir: "%s"
listen:
  - { kind: mx, address: "127.0.0.1:12525" }
  - { kind: submission, address: "127.0.0.1:12587" }
limits:
  max_line_length: 2048
  max_message_size: 1000000
  max_recipients: 100
  max_errors: 5
  max_connections: 100
  max_connections_per_ip: 10
  command_timeout: 60
  data_timeout: 60
trusted_networks: ["10.0.0.0/8"]
smtp_processes: 1
""" % data)


def one_line(stderr):
    lines = [l for l in stderr.decode(errors="replace").splitlines() if l.strip()]
    # sanitizer noise would be a failure of its own
    assert len(lines) == 1, "expected exactly one line on stderr, got %d:\n%s" % (
        len(lines), stderr.decode(errors="replace"))
    return lines[0]


def test_valid_config_exit_0(workdir):
    p = run(["check-config", "-c", valid_config(workdir)])
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def test_full_contract_config_valid(workdir, tls_cert):
    data = os.path.join(workdir, "data-full")
    path = write(workdir, "full.yaml", """\
hostname: mx.example.test
data_dir: "%s"
listen:
  - { kind: mx,          address: "127.0.0.1:12525" }
  - { kind: submission,  address: "127.0.0.1:12587" }
  - { kind: submissions, address: "127.0.0.1:12465" }
  - { kind: imap,        address: "127.0.0.1:12143" }
  - { kind: imaps,       address: "127.0.0.1:12993" }
  - { kind: pop3,        address: "127.0.0.1:12110" }
  - { kind: pop3s,       address: "127.0.0.1:12995" }
  - { kind: managesieve, address: "127.0.0.1:14190" }
trusted_networks:
  - 192.168.0.0/16
  - "::1/128"
limits: { max_line_length: 1000, max_message_size: 10485760, max_recipients: 50, max_errors: 5,
          max_connections: 500, max_connections_per_ip: 5, command_timeout: 120, data_timeout: 120 }
queue: { retry_min: 60, retry_max: 3600, max_age: 86400 }
smtp_processes: 2
user: mailroute
vmail_user: vmail
log_file: "%s/mailroute.log"
tls: { cert: "%s", key: "%s" }
""" % (data, workdir, tls_cert[0], tls_cert[1]))
    p = run(["check-config", "-c", path])
    assert p.returncode == 0, p.stderr.decode(errors="replace")


# (name, yaml text, expected line, acceptable columns (None = any >= 1))
BAD_CONFIGS = [
    ("unknown top-level key", """\
hostname: mx.example.test
data_dir: /tmp/mailroute-e2e-unused
bogus_key: 1
""", 3, {1, 12}),
    ("unknown key in limits", """\
hostname: mx.example.test
limits:
  max_errors: 3
  max_bogus: 5
""", 4, {3, 14}),
    ("wrong type for a number", """\
hostname: mx.example.test
limits:
  command_timeout: 60
  max_errors: lots
""", 4, {3, 15}),
    ("negative number", """\
hostname: mx.example.test
limits:
  max_recipients: -5
""", 3, {3, 19}),
    ("unknown listener kind", """\
hostname: mx.example.test
listen:
  - { kind: mx, address: "127.0.0.1:12525" }
  - { kind: smtpx, address: "127.0.0.1:12526" }
""", 4, None),
    ("port out of range", """\
hostname: mx.example.test
listen:
  - { kind: mx, address: "127.0.0.1:99999" }
""", 3, None),
    ("address without port", """\
hostname: mx.example.test
listen:
  - kind: mx
    address: "not an address"
""", 4, None),
    ("listen is not a sequence", """\
hostname: mx.example.test
listen: 25
""", 2, None),
    ("tab indentation", """\
hostname: mx.example.test
limits:
\tmax_errors: 3
""", 3, None),
    ("unclosed quote", """\
hostname: mx.example.test
data_dir: "/tmp/x
limits: { max_errors: 3 }
""", None, None),
    ("bad CIDR", """\
hostname: mx.example.test
trusted_networks:
  - 10.0.0.0/8
  - 300.1.2.3/33
""", 4, None),
    ("smtp_processes not a number", """\
hostname: mx.example.test
smtp_processes: two
""", 2, {1, 17}),
]


@pytest.mark.parametrize("name,text,line,cols", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_check_config_error_position(workdir, name, text, line, cols):
    path = write(workdir, re.sub(r"\W+", "_", name) + ".yaml", text)
    p = run(["check-config", "-c", path])
    assert p.returncode == 2, "%s: exit %d, stderr %r" % (name, p.returncode, p.stderr)
    msg = one_line(p.stderr)
    m = re.match(r"^(.+?):(\d+):(\d+): (.+)$", msg)
    assert m, "%s: not file:line:col: message: %r" % (name, msg)
    assert os.path.abspath(m.group(1)) == path or m.group(1).endswith(os.path.basename(path)), msg
    if line is not None:
        assert int(m.group(2)) == line, "%s: line %s, expected %d: %r" % (name, m.group(2), line, msg)
    assert int(m.group(3)) >= 1, msg
    if cols is not None:
        assert int(m.group(3)) in cols, "%s: column %s, expected one of %s: %r" % (name, m.group(3), cols, msg)
    assert p.stdout == b"", p.stdout


def test_check_config_missing_file(workdir):
    path = os.path.join(workdir, "does-not-exist.yaml")
    p = run(["check-config", "-c", path])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "does-not-exist.yaml" in one_line(p.stderr)


def test_check_config_names_the_key(workdir):
    path = write(workdir, "named.yaml", "hostname: mx.example.test\nbogus_key: 1\n")
    p = run(["check-config", "-c", path])
    assert p.returncode == 2
    assert "bogus_key" in one_line(p.stderr)


def test_serve_bad_config_exit_2(workdir):
    path = write(workdir, "serve-bad.yaml", "hostname: mx.example.test\nlimits:\n  max_errors: lots\n")
    p = run(["serve", "-c", path], timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert re.match(r"^.+:3:\d+: ", one_line(p.stderr))


def test_serve_port_in_use_fails_fast(workdir):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    data = make_tmpdir("mailroute-e2e-cli-busy-")
    try:
        path = write(workdir, "busy.yaml", 'hostname: mx.example.test\ndata_dir: "%s"\nlisten:\n'
                     '  - { kind: mx, address: "127.0.0.1:%d" }\n' % (data, port))
        p = run(["serve", "-c", path], timeout=30)
        assert p.returncode != 0
        assert str(port) in p.stderr.decode(errors="replace"), p.stderr
    finally:
        s.close()
        shutil.rmtree(data, ignore_errors=True)


MISUSE = [
    (["frobnicate"], "unknown command"),
    (["check-config", "unexpected-extra-argument"], "extra argument"),
    (["serve", "--no-such-option"], "unknown option"),
    (["domain"], "domain without subcommand"),
    (["domain", "add"], "domain add without name"),
    (["domain", "frobnicate", "x.test"], "unknown domain subcommand"),
    (["user", "add"], "user add without address"),
    (["user", "frobnicate"], "unknown user subcommand"),
    (["queue", "frobnicate"], "unknown queue subcommand"),
    (["queue", "show"], "queue show without id"),
]


@pytest.mark.parametrize("args,why", MISUSE, ids=[m[1] for m in MISUSE])
def test_misuse_one_line_exit_2(workdir, args, why):
    cfg = valid_config(workdir, "misuse.yaml")
    p = run(["-c", cfg] + args, input=b"")
    assert p.returncode == 2, "%s: exit %d stderr %r" % (why, p.returncode, p.stderr)
    line = one_line(p.stderr)
    assert line.startswith("mailroute"), line
    assert p.stdout == b"", p.stdout


def test_dash_c_without_file():
    p = run(["check-config", "-c"])
    assert p.returncode == 2
    one_line(p.stderr)


def test_no_arguments_is_misuse():
    p = run([])
    assert p.returncode == 2
    assert p.stderr.strip(), "no message on stderr"
    assert p.stdout == b""


@pytest.mark.parametrize("arg", ["--help", "help"])
def test_help_exit_0(arg):
    p = run([arg])
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    for cmd in ("serve", "check-config", "domain", "user", "queue"):
        assert cmd in out, (cmd, out)


def test_version_exit_0():
    p = run(["--version"])
    assert p.returncode == 0
    assert p.stdout.decode().startswith("mailroute ")


def test_user_add_and_duplicate(workdir):
    cfg = valid_config(workdir, "users.yaml")
    assert run(["-c", cfg, "domain", "add", "cli.test"]).returncode == 0
    p = run(["-c", cfg, "user", "add", "someone@cli.test"], input=b"pw-123456\n")
    assert p.returncode == 0, p.stderr
    p = run(["-c", cfg, "user", "add", "someone@cli.test"], input=b"pw-123456\n")
    assert p.returncode == 1, "adding the same user twice: exit %d %r" % (p.returncode, p.stderr)
    one_line(p.stderr)
    p = run(["-c", cfg, "user", "add", "other@unknown-domain.test"], input=b"pw-123456\n")
    assert p.returncode != 0, "user in a domain that does not exist was accepted"
    p = run(["-c", cfg, "user", "list"])
    assert p.returncode == 0 and b"someone@cli.test" in p.stdout, p


def test_serve_sigterm_stops_cleanly(make_server):
    """SIGTERM to `mailroute serve` = clean stop: exit 0 soon, no process left behind."""
    srv = make_server("sigterm")
    try:
        assert len(srv.pids()) >= 2, "expected a master and role processes: %s" % srv.pids()
        srv.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            rc = srv.proc.wait(timeout=15)
        except Exception:
            rc = None
        assert rc == 0, "serve did not exit 0 within 15 s of SIGTERM (rc %r, %.0fs); processes: %s" % (
            rc, time.monotonic() - t0, sorted(srv.pids()))
        deadline = time.monotonic() + 10
        while srv.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not srv.pids(), "processes left after the master exited: %s" % sorted(srv.pids())
    finally:
        finish_server(srv)
