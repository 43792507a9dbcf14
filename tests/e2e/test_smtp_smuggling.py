"""SMTP smuggling (CVE-2023-51764 class): only CRLF.CRLF ends DATA; bare CR or LF -> 5xx.

Each case sends, in ONE write, a first message (to alice) whose body contains a fake
end-of-data sequence followed by a second, smuggled transaction (to bob), then a real
CRLF.CRLF. The server must answer exactly one reply to the whole DATA (5xx where the
body holds a bare CR/LF), must never execute the smuggled commands, and bob must never
receive the smuggled message.
"""
import socket
import ssl

import pytest

from conftest import ConnectionClosed, RawSMTP, build_message, unique_token

ALICE = "alice@example.test"
BOB = "bob@example.test"

# fake end-of-data sequences that contain a bare CR or LF: the message must get a 5xx
BARE_VARIANTS = [
    (b"\n.\n", "LF.LF"),
    (b"\n.\r\n", "LF.CRLF"),
    (b"\r\n.\n", "CRLF.LF"),
    (b"\r.\r", "CR.CR"),
    (b"\r.\r\n", "CR.CRLF"),
    (b"\r\n.\r", "CRLF.CR"),
    (b"\n.\r", "LF.CR"),
    (b"\r.\n", "CR.LF"),
    (b"\r\n.\r\r\n", "CRLF.CRCRLF"),
    (b"\n\n.\n\n", "LFLF.LFLF"),
    (b"\r\n\n.\r\n", "CRLF LF.CRLF"),
]

# fake end-of-data sequences without bare CR/LF: they are content, the message may be
# accepted (as ONE message holding the smuggled text) or refused, never split
OTHER_VARIANTS = [
    (b"\r\n .\r\n", "CRLF SP.CRLF"),
    (b"\r\n.\x00\r\n", "CRLF.NUL CRLF"),
    (b"\r\n..\r\n", "CRLF..CRLF (stuffed dot)"),
    (b"\r\n.\t\r\n", "CRLF.TAB CRLF"),
    (b"\r\n\x00.\r\n", "CRLF NUL.CRLF"),
]


def smuggled_tail(token2):
    return (b"MAIL FROM:<smuggler@client.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n" +
            build_message(token2, sender="smuggler@client.test", to=BOB).encode())


def open_data(server):
    c = RawSMTP(server.ports["mx"])
    c.ehlo()
    assert c.cmd("MAIL FROM:<first@client.test>")[0] == 250
    assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
    assert c.cmd("DATA")[0] == 354
    return c


def after_reply_no_smuggled_commands(c):
    """After the single DATA reply, the next reply must be the one to our VRFY probe
    (252), not replies to smuggled MAIL/RCPT/DATA. A closed connection is also fine."""
    try:
        c.send(b"VRFY probe\r\n")
        code, text = c.reply()
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return
    assert code == 252, "reply after the DATA reply is %d %r: smuggled commands ran?" % (code, text)


def smuggle(server, variant, first_body_end=b"Second line."):
    t1, t2 = unique_token("smug1"), unique_token("smug2")
    c = open_data(server)
    try:
        first = build_message(t1, body="").encode() + b"Hello " + first_body_end
        c.send(first + variant + smuggled_tail(t2) + b"\r\n.\r\n")
        code, text = c.reply()
        after_reply_no_smuggled_commands(c)
    finally:
        c.close()
    return t1, t2, code, text


@pytest.mark.parametrize("variant,name", BARE_VARIANTS, ids=[v[1] for v in BARE_VARIANTS])
def test_bare_eod_variant_refused(server, variant, name):
    t1, t2, code, text = smuggle(server, variant)
    assert 500 <= code < 600, "%s: first reply %d %r (must be 5xx)" % (name, code, text)
    server.barrier(BOB)
    server.barrier(ALICE)
    server.assert_absent(t2)
    server.assert_absent(t1)


@pytest.mark.parametrize("variant,name", OTHER_VARIANTS, ids=[v[1] for v in OTHER_VARIANTS])
def test_other_eod_variant_not_split(server, variant, name):
    t1, t2, code, text = smuggle(server, variant)
    assert code == 250 or 500 <= code < 600, "%s: %d %r" % (name, code, text)
    server.barrier(BOB)
    server.assert_absent(t2, [BOB])
    if code == 250:
        m = server.wait_for_message(ALICE, t1)
        assert t2.encode() in m, "%s: the smuggled text must stay inside the first message" % name


@pytest.mark.parametrize("body,name", [
    (b"line one\nline two\r\n", "bare LF inside a line"),
    (b"line one\rline two\r\n", "bare CR inside a line"),
    (b"line one\r\n\n", "bare LF empty line"),
    (b"trailing CR\r\r\n", "CR CR LF"),
])
def test_bare_cr_lf_in_body_refused(server, body, name):
    t1 = unique_token("bare")
    c = open_data(server)
    try:
        c.send(build_message(t1, body="").encode() + body + b".\r\n")
        code, text = c.reply()
        after_reply_no_smuggled_commands(c)
    finally:
        c.close()
    assert 500 <= code < 600, "%s: %d %r" % (name, code, text)
    server.barrier(ALICE)
    server.assert_absent(t1)


@pytest.mark.parametrize("data,name", [
    (b"MAIL FROM:<a@client.test>\nRCPT TO:<bob@example.test>\r\n", "LF between MAIL and RCPT"),
    (b"MAIL FROM:<a@client.test>\rRCPT TO:<bob@example.test>\r\n", "CR between MAIL and RCPT"),
    (b"NOOP\nNOOP\r\n", "LF between NOOPs"),
    (b"RSET\rNOOP\r\n", "CR between commands"),
    (b"NOOP\n\r\n", "NOOP LF CRLF"),
])
def test_bare_cr_lf_in_command_refused(server, data, name):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        c.send(data)
        code, text = c.reply()
        assert 500 <= code < 600, "%s: %d %r" % (name, code, text)
        after_reply_no_smuggled_commands(c)


def test_bare_lf_after_data_command(server):
    t2 = unique_token("smugdata")
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        c.send(b"DATA\n" + build_message(t2, to=BOB).encode() + b"\r\n.\r\n")
        code, text = c.reply()
        assert 500 <= code < 600, (code, text)
    server.barrier(BOB)
    server.assert_absent(t2)


def test_bare_lf_only_client_cannot_send(server):
    """A client speaking LF-only is refused from its first command on."""
    s = socket.create_connection(("127.0.0.1", server.ports["mx"]), timeout=30)
    c = RawSMTP.__new__(RawSMTP)
    c.sock, c.buf, c.timeout = s, b"", 30
    try:
        assert c.reply()[0] == 220
        c.send(b"EHLO client.test\n")
        c.send(b"\r\n")  # make sure a reply comes whatever the server thinks of the line
        code, text = c.reply()
        assert 500 <= code < 600, (code, text)
    finally:
        c.close()


def test_bdat_content_with_fake_terminator_is_one_message(server):
    t1, t2 = unique_token("bdsm1"), unique_token("bdsm2")
    msg = build_message(t1).encode() + b"\r\n.\r\n" + smuggled_tail(t2) + b"\r\n.\r\n"
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<first@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        code, text = c.reply()
        assert code == 250, (code, text)
        after_reply_no_smuggled_commands(c)
    m = server.wait_for_message(ALICE, t1)
    assert t2.encode() in m
    server.barrier(BOB)
    server.assert_absent(t2, [BOB])


def test_valid_message_after_refused_one_same_connection(server):
    """After a smuggling attempt is refused, a correct message on the same connection works
    (or the server closed the connection)."""
    t1, t3 = unique_token("smugA"), unique_token("smugOK")
    c = open_data(server)
    try:
        c.send(build_message(t1, body="").encode() + b"x\n.\n" + b"\r\n.\r\n")
        code, text = c.reply()
        assert 500 <= code < 600, (code, text)
        try:
            code, text = c.cmd("MAIL FROM:<again@client.test>")
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            return
        assert code == 250, (code, text)
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(build_message(t3).encode() + b".\r\n")
        assert c.reply()[0] == 250
    finally:
        c.close()
    server.wait_for_message(ALICE, t3)
    server.assert_absent(t1)
