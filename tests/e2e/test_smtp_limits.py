"""Configurable limits: message size, recipients, timeouts, errors, line length, connections per IP."""
import socket
import time

import pytest

from conftest import (ConnectionClosed, RawSMTP, build_message, data_payload, finish_server, unique_token,
                      wait_until)

MAX_SIZE = 20000
MAX_RCPT = 5
MAX_ERRORS = 3
TIMEOUT = 5
MAX_LINE = 512
PER_IP = 4
ALICE = "alice@example.test"
EXTRA_USERS = ["u%d@example.test" % i for i in range(1, MAX_RCPT + 2)]


@pytest.fixture(scope="module")
def lim(make_server):
    srv = make_server("limits", limits={
        "max_message_size": MAX_SIZE,
        "max_recipients": MAX_RCPT,
        "max_errors": MAX_ERRORS,
        "command_timeout": TIMEOUT,
        "data_timeout": TIMEOUT,
        "max_line_length": MAX_LINE,
    }, start=False)
    for u in EXTRA_USERS:
        srv.cli("user", "add", u, input=b"pw-" + u.encode() + b"\n")
    srv.start()
    yield srv
    finish_server(srv)


def session(srv, **kw):
    c = RawSMTP(srv.ports["mx"], **kw)
    assert c.banner[0] == 220, c.banner
    c.ehlo()
    return c


def big_message(token, size):
    base = build_message(token, body="")
    line = "z" * 76 + "\r\n"
    return base + line * ((size - len(base)) // len(line) + 1)


# ---------------------------------------------------------------- size

def test_size_advertised(lim):
    with RawSMTP(lim.ports["mx"]) as c:
        text = c.ehlo()
        sizes = [l.split() for l in text.split("\n") if l.upper().startswith("SIZE")]
        assert sizes and sizes[0][1:] == [str(MAX_SIZE)], text


def test_mail_size_parameter_over_limit_552(lim):
    with session(lim) as c:
        code, text = c.cmd("MAIL FROM:<s@client.test> SIZE=%d" % (MAX_SIZE * 2))
        assert code == 552 and text.startswith("5.3.4"), (code, text)


def test_message_under_limit_accepted(lim):
    token = unique_token("small")
    msg = big_message(token, MAX_SIZE // 2)
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<s@client.test> SIZE=%d" % len(msg))[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(msg))
        code, text = c.reply()
        assert code == 250, (code, text)
    lim.wait_for_message(ALICE, token)


def test_oversize_data_552(lim):
    token = unique_token("big")
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(big_message(token, MAX_SIZE * 3)))
        code, text = c.reply()
        assert code == 552 and text.startswith("5.3.4"), (code, text)
        # the session survives and the next transaction works
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
    lim.barrier()
    lim.assert_absent(token)


def test_oversize_bdat_552(lim):
    token = unique_token("bigbdat")
    msg = big_message(token, MAX_SIZE * 3).encode()
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        code, text = c.reply()
        assert code == 552 and text.startswith("5.3.4"), (code, text)
    lim.barrier()
    lim.assert_absent(token)


def test_oversize_bdat_in_chunks_552(lim):
    token = unique_token("bigchunks")
    msg = big_message(token, MAX_SIZE * 2).encode()
    chunk = 8000
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        codes = []
        for off in range(0, len(msg), chunk):
            part = msg[off:off + chunk]
            last = off + chunk >= len(msg)
            c.send(b"BDAT %d%s\r\n" % (len(part), b" LAST" if last else b"") + part)
            code, text = c.reply()
            codes.append((code, text))
            if code != 250:
                break
        assert codes[-1][0] == 552, codes
    lim.barrier()
    lim.assert_absent(token)


# ---------------------------------------------------------------- recipients

def test_recipient_limit_452(lim):
    token = unique_token("rcpts")
    with session(lim) as c:
        assert c.cmd("MAIL FROM:<r@client.test>")[0] == 250
        for u in EXTRA_USERS[:MAX_RCPT]:
            code, text = c.cmd("RCPT TO:<%s>" % u)
            assert code == 250, (u, code, text)
        code, text = c.cmd("RCPT TO:<%s>" % EXTRA_USERS[MAX_RCPT])
        assert code == 452 and text.startswith("4.5.3"), (code, text)
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token)))
        assert c.reply()[0] == 250
    for u in EXTRA_USERS[:MAX_RCPT]:
        lim.wait_for_message(u, token)
    lim.barrier(EXTRA_USERS[MAX_RCPT])
    lim.assert_absent(token, [EXTRA_USERS[MAX_RCPT]])


# ---------------------------------------------------------------- timeouts

def _expect_421_close(c, started, limit):
    code, text = c.reply()
    elapsed = time.monotonic() - started
    assert code == 421 and text.startswith("4."), (code, text)
    assert c.wait_closed(15), "connection still open after 421"
    assert elapsed >= limit - 1, "timed out after %.1fs, limit is %ds" % (elapsed, limit)
    assert elapsed <= limit + 20, "timed out only after %.1fs, limit is %ds" % (elapsed, limit)


def test_idle_timeout_after_banner_421(lim):
    with RawSMTP(lim.ports["mx"], timeout=TIMEOUT + 30) as c:
        _expect_421_close(c, time.monotonic(), TIMEOUT)


def test_idle_timeout_mid_transaction_421(lim):
    with session(lim, timeout=TIMEOUT + 30) as c:
        assert c.cmd("MAIL FROM:<t@client.test>")[0] == 250
        c.send("RCPT TO:<%s>\r\n" % ALICE)
        started = time.monotonic()
        assert c.reply()[0] == 250
        _expect_421_close(c, started, TIMEOUT)


def test_partial_command_does_not_reset_timer(lim):
    """A client trickling bytes without ever finishing a line is still timed out."""
    with session(lim, timeout=TIMEOUT + 30) as c:
        started = time.monotonic()
        c.send("NOOP")
        deadline = started + TIMEOUT + 20
        got = None
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                c.send(" ")
            except (BrokenPipeError, ConnectionResetError):
                got = "closed"
                break
            c.sock.settimeout(0.01)
            try:
                chunk = c.sock.recv(4096)
                c.buf += chunk
                if not chunk or b"\r\n" in c.buf:
                    got = c.buf
                    break
            except (socket.timeout, TimeoutError, BlockingIOError):
                pass
            except ConnectionResetError:
                got = "closed"
                break
            finally:
                c.sock.settimeout(c.timeout)
        assert got is not None, "a trickling client was never timed out"
        if got != "closed":
            assert got.startswith(b"421") or got.startswith(b"500"), got


def test_data_timeout_421(lim):
    token = unique_token("datato")
    with session(lim, timeout=TIMEOUT + 30) as c:
        assert c.cmd("MAIL FROM:<t@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(build_message(token))
        _expect_421_close(c, time.monotonic(), TIMEOUT)
    lim.barrier()
    lim.assert_absent(token)


def test_idle_timeout_inside_starttls_421(lim):
    with session(lim, timeout=TIMEOUT + 30) as c:
        c.starttls()
        c.ehlo()
        _expect_421_close(c, time.monotonic(), TIMEOUT)


def test_idle_timeout_implicit_tls_421(lim):
    with RawSMTP(lim.ports["submissions"], tls=True, timeout=TIMEOUT + 30) as c:
        assert c.banner[0] == 220
        _expect_421_close(c, time.monotonic(), TIMEOUT)


@pytest.mark.parametrize("where", ["submissions before ClientHello", "after STARTTLS before ClientHello"])
def test_stalled_tls_handshake_is_dropped(lim, where):
    s = socket.create_connection(("127.0.0.1", lim.ports["submissions" if "submissions" in where else "mx"]),
                                 timeout=TIMEOUT + 30)
    try:
        if "STARTTLS" in where:
            c = RawSMTP.__new__(RawSMTP)
            c.sock, c.buf, c.timeout = s, b"", TIMEOUT + 30
            assert c.reply()[0] == 220
            c.ehlo()
            assert c.cmd("STARTTLS")[0] == 220
        started = time.monotonic()
        s.settimeout(TIMEOUT + 25)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        except (socket.timeout, TimeoutError):
            pytest.fail("%s: connection still open %.0fs later (timeout %ds)" % (
                where, time.monotonic() - started, TIMEOUT))
        # a plaintext 421 would be tolerable here too; what matters is that it ends
        while data:
            data = s.recv(4096)
        assert time.monotonic() - started <= TIMEOUT + 20
    finally:
        s.close()


# ---------------------------------------------------------------- errors

def test_too_many_errors_421(lim):
    with session(lim) as c:
        replies = []
        for i in range(MAX_ERRORS + 1):
            try:
                replies.append(c.cmd("BOGUS%d" % i))
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                break
            if replies[-1][0] == 421:
                break
        codes = [r[0] for r in replies]
        assert 421 in codes, replies
        assert codes.index(421) <= MAX_ERRORS, "421 only after %d errors (max %d)" % (codes.index(421), MAX_ERRORS)
        assert all(500 <= x < 600 for x in codes[:codes.index(421)]), replies
        assert c.wait_closed(15), "connection still open after 421"


def test_errors_do_not_carry_over_sessions(lim):
    for _ in range(2):
        with session(lim) as c:
            for i in range(MAX_ERRORS - 1):
                assert 500 <= c.cmd("BOGUS")[0] < 600
            assert c.cmd("NOOP")[0] == 250


# ---------------------------------------------------------------- line length

def test_long_line_within_limit_ok(lim):
    with session(lim) as c:
        code, text = c.cmd("NOOP " + "a" * (MAX_LINE - 20))
        assert code == 250, (code, text)


def test_overlong_command_line_500_552(lim):
    with session(lim) as c:
        code, text = c.cmd("NOOP " + "a" * (MAX_LINE * 2))
        assert code == 500 and text.startswith("5.5.2"), (code, text)
        # the rest of the long line was not taken as a new command
        code, text = c.cmd("NOOP")
        assert code == 250, (code, text)


def test_overlong_mail_line_500(lim):
    with session(lim) as c:
        code, text = c.cmd("MAIL FROM:<%s@client.test>" % ("x" * (MAX_LINE * 2)))
        assert code == 500 and text.startswith("5.5.2"), (code, text)


def test_endless_line_does_not_hang_server(lim):
    c = session(lim)
    try:
        try:
            for _ in range(32):
                c.send(b"A" * 8192)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (socket.timeout, TimeoutError):
            pytest.fail("server stopped reading an endless line but kept the connection open")
        try:
            c.send(b"\r\n")
            code, text = c.reply()
            assert 500 <= code < 600 or code == 421, (code, text)
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            pass
    finally:
        c.close()
    with session(lim) as c2:
        assert c2.cmd("NOOP")[0] == 250


# ---------------------------------------------------------------- connections per IP

@pytest.fixture(scope="module")
def perip(make_server):
    """Own server: a closed connection is released a moment later, which a tiny per-IP
    limit would turn into spurious 421s for the other tests."""
    srv = make_server("perip", limits={"max_connections_per_ip": PER_IP, "command_timeout": 60})
    yield srv
    finish_server(srv)


def test_connections_per_ip(perip):
    lim = perip
    def ok_to_connect(source):
        try:
            c = RawSMTP(lim.ports["mx"], source=source, timeout=10)
        except (ConnectionClosed, ConnectionResetError, OSError):
            return None
        if c.banner[0] == 220:
            return c
        c.close()
        return None

    held = []
    try:
        # earlier tests' connections may take a moment to be noticed as closed
        deadline = time.monotonic() + 30
        while len(held) < PER_IP:
            c = ok_to_connect("127.0.0.1")
            if c is not None:
                held.append(c)
                continue
            assert time.monotonic() < deadline, "only %d connections accepted, limit %d" % (len(held), PER_IP)
            time.sleep(0.2)
        for c in held:
            assert c.cmd("NOOP")[0] == 250   # keep them alive and prove they are served
        try:
            extra = RawSMTP(lim.ports["mx"], source="127.0.0.1", timeout=10)
            code, text = extra.banner
            extra_closed = extra.wait_closed(10)
            extra.close()
            assert code == 421 and text.startswith("4."), "connection %d from one IP: %d %s" % (
                PER_IP + 1, code, text)
            assert extra_closed
        except (ConnectionClosed, ConnectionResetError):
            pass  # refused without a greeting: also a refusal
        # another IP is not affected
        other = RawSMTP(lim.ports["mx"], source="127.0.0.2", timeout=10)
        assert other.banner[0] == 220, other.banner
        other.close()
        # closing one frees a slot
        last = held.pop()
        last.cmd("QUIT")
        last.close()
        again = wait_until(lambda: ok_to_connect("127.0.0.1"), 20, what="a freed connection slot")
        again.close()
    finally:
        for c in held:
            c.close()
