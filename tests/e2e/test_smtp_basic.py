"""Plain SMTP on the mx listener: greeting, extensions, commands, delivery, pipelining, BDAT, SMTPUTF8."""
import re
import smtplib
import threading
import time

import pytest

from conftest import (HOSTNAME, QUEUED_RE, RawSMTP, body_of, build_message, data_payload, header_block,
                      header_names, lf, send_plain, swaks, unique_token, wait_until)

ALICE = "alice@example.test"
BOB = "bob@example.test"


def ehlo_keywords(text):
    kws = {}
    for line in text.split("\n")[1:]:
        parts = line.split()
        if parts:
            kws[parts[0].upper()] = parts[1:]
    return kws


def test_banner_names_host(server):
    with RawSMTP(server.ports["mx"]) as c:
        code, text = c.banner
        assert code == 220
        assert text.split()[0] == HOSTNAME, text
        assert "ESMTP" in text


@pytest.mark.parametrize("ext", ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                                 "STARTTLS", "CHUNKING", "DSN"])
def test_ehlo_advertises(server, ext):
    with RawSMTP(server.ports["mx"]) as c:
        kws = ehlo_keywords(c.ehlo())
        assert ext in kws, kws
        if ext == "SIZE":
            assert kws["SIZE"] and kws["SIZE"][0].isdigit() and int(kws["SIZE"][0]) > 0, kws["SIZE"]


def test_no_auth_offered_without_tls(server):
    for kind in ("mx", "submission"):
        with RawSMTP(server.ports[kind]) as c:
            kws = ehlo_keywords(c.ehlo())
            assert "AUTH" not in kws, (kind, kws)


def test_helo_then_mail(server):
    token = unique_token("helo")
    with RawSMTP(server.ports["mx"]) as c:
        code, text = c.cmd("HELO client.test")
        assert code == 250, text
        assert c.cmd("MAIL FROM:<helo@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token)))
        code, text = c.reply()
        assert code == 250, text
    server.wait_for_message(ALICE, token)


@pytest.mark.parametrize("line,codes", [
    ("NOOP", (250,)),
    ("RSET", (250,)),
    ("VRFY alice", (252,)),
    ("VRFY <nobody@example.test>", (252,)),
    ("HELP", (214, 211)),
    ("FROBNICATE", (500, 502)),
    ("RCPT TO:<alice@example.test>", (503,)),      # no MAIL yet
    ("DATA", (503,)),                              # no MAIL yet
    ("BDAT 8 LAST\r\n012345", (503,)),             # no MAIL yet (8 chunk bytes with cmd()'s CRLF)
    ("MAIL FROM:<a@b@client.test>", (501, 553)),   # two @
    ("MAIL TO:<a@client.test>", (500, 501)),
    ("MAIL FROM:<a@client.test> FOO=BAR", (555, 501)),
    ("EHLO", (501,)),
])
def test_single_command_replies(server, line, codes):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        code, text = c.cmd(line)
        assert code in codes, (line, code, text)
        # enhanced status codes are advertised, so every reply after EHLO carries one
        if code not in (214, 211):
            assert re.match(r"^[245]\.\d{1,3}\.\d{1,3}( |$)", text), (line, text)
        # the session is still usable
        assert c.cmd("NOOP")[0] == 250


def test_quit_closes(server):
    with RawSMTP(server.ports["mx"]) as c:
        code, text = c.cmd("QUIT")
        assert code == 221, text
        assert c.wait_closed(10)


def test_commands_case_insensitive(server):
    token = unique_token("lower")
    with RawSMTP(server.ports["mx"]) as c:
        assert c.cmd("ehlo client.test")[0] == 250
        assert c.cmd("mail from:<lower@client.test>")[0] == 250
        assert c.cmd("rcpt to:<alice@EXAMPLE.TEST>")[0] == 250
        assert c.cmd("data")[0] == 354
        c.send(data_payload(build_message(token)))
        assert c.reply()[0] == 250
    server.wait_for_message(ALICE, token)


def test_nested_mail_refused(server):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>")[0] == 250
        code, text = c.cmd("MAIL FROM:<b@client.test>")
        assert code == 503, text
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<b@client.test>")[0] == 250


def test_smtplib_plain_delivery_headers(server):
    token = unique_token("plain")
    msg = build_message(token, sender="carol@client.test")
    s = smtplib.SMTP("127.0.0.1", server.ports["mx"], timeout=30)
    try:
        s.ehlo("client.test")
        s.mail("carol@client.test")
        code, resp = s.rcpt(ALICE)
        assert code == 250, resp
        code, resp = s.data(msg.encode())
        assert code == 250, resp
        assert QUEUED_RE.match(resp.decode()), resp
    finally:
        s.quit()
    m = server.wait_for_message(ALICE, token)
    hdrs = header_block(m)
    names = header_names(m)
    assert "Return-Path: <carol@client.test>" in hdrs, hdrs
    assert any(h.lower() == "delivered-to: alice@example.test" for h in hdrs), hdrs
    assert "received" in names, hdrs
    # Received: is prepended: it comes before every header of the original message
    assert names.index("received") < names.index("from"), names
    assert names.index("received") < names.index("subject"), names
    received = [h for h in hdrs if h.lower().startswith("received:")][0]
    assert HOSTNAME in received and "client.test" in received, received
    assert b"Hello, this is message " + token.encode() in m
    assert b"\r\n" in m or b"\n" in m


def test_queued_reply_has_id_and_ids_differ(server):
    ids = set()
    for _ in range(3):
        token = unique_token("qid")
        code, text = send_plain(server.ports["mx"], "q@client.test", [ALICE], build_message(token))
        assert code == 250, text
        m = QUEUED_RE.match(text)
        assert m, text
        ids.add(text.split("queued as", 1)[1].split()[0])
    assert len(ids) == 3, ids


def test_two_recipients_each_get_one_copy(server):
    token = unique_token("two")
    code, text = send_plain(server.ports["mx"], "two@client.test", [ALICE, BOB], build_message(token))
    assert code == 250, text
    a = server.wait_for_message(ALICE, token)
    b = server.wait_for_message(BOB, token)
    assert b"Delivered-To: alice@example.test" in a
    assert b"Delivered-To: bob@example.test" in b


def test_null_sender_accepted(server):
    token = unique_token("null")
    code, text = send_plain(server.ports["mx"], "", [ALICE], build_message(token, sender="mailer-daemon@client.test"))
    assert code == 250, text
    m = server.wait_for_message(ALICE, token)
    assert "Return-Path: <>" in header_block(m)


def test_dot_stuffing_and_long_body(server):
    token = unique_token("dots")
    body = "".join(".line %d with a leading dot\r\n" % i for i in range(50))
    body += "..\r\n.\tx\r\n" + ("y" * 900 + "\r\n") * 200
    code, text = send_plain(server.ports["mx"], "d@client.test", [ALICE], build_message(token, body=body))
    assert code == 250, text
    m = server.wait_for_message(ALICE, token)
    assert body_of(m) == lf(body.encode()), "body changed in transit"


def test_terminator_split_across_writes(server):
    token = unique_token("split")
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        payload = data_payload(build_message(token))
        c.send(payload[:-5])
        time.sleep(0.2)
        c.send(payload[-5:-3])   # "\r\n"
        time.sleep(0.2)
        c.send(payload[-3:-1])   # ".\r"
        time.sleep(0.2)
        c.send(payload[-1:])     # "\n"
        code, text = c.reply()
        assert code == 250, text
    server.wait_for_message(ALICE, token)


def test_unknown_user_550_511(server):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<u@client.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<nosuchuser@example.test>")
        assert code == 550 and text.startswith("5.1.1"), (code, text)
        # a good recipient after a refused one still works
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250


def test_pipelining(server):
    token = unique_token("pipe")
    with RawSMTP(server.ports["mx"]) as c:
        assert "PIPELINING" in ehlo_keywords(c.ehlo())
        c.send("MAIL FROM:<p@client.test>\r\nRCPT TO:<alice@example.test>\r\n"
               "RCPT TO:<nosuchuser@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        replies = [c.reply() for _ in range(5)]
        assert [r[0] for r in replies] == [250, 250, 550, 250, 354], replies
        c.send(data_payload(build_message(token)) + b"RSET\r\nNOOP\r\nQUIT\r\n")
        replies = [c.reply() for _ in range(4)]
        assert [r[0] for r in replies] == [250, 250, 250, 221], replies
    server.wait_for_message(ALICE, token)
    server.wait_for_message(BOB, token)


def test_pipelining_two_messages_one_write(server):
    t1, t2 = unique_token("pipe2a"), unique_token("pipe2b")
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        c.send("MAIL FROM:<p@client.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(data_payload(build_message(t1)) +
               b"MAIL FROM:<p@client.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        c.send(data_payload(build_message(t2, to=BOB)))
        assert c.reply()[0] == 250
    server.wait_for_message(ALICE, t1)
    server.wait_for_message(BOB, t2)
    server.assert_absent(t1, [BOB])
    server.assert_absent(t2, [ALICE])


def test_bdat_chunks(server):
    token = unique_token("bdat")
    msg = build_message(token).encode()
    with RawSMTP(server.ports["mx"]) as c:
        assert "CHUNKING" in ehlo_keywords(c.ehlo())
        assert c.cmd("MAIL FROM:<b@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        half = len(msg) // 2
        c.send(b"BDAT %d\r\n" % half + msg[:half])
        code, text = c.reply()
        assert code == 250, text
        c.send(b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
        code, text = c.reply()
        assert code == 250 and QUEUED_RE.match(text), (code, text)
    m = server.wait_for_message(ALICE, token)
    assert body_of(m) == lf(msg.split(b"\r\n\r\n", 1)[1])


def test_bdat_pipelined_dots_and_zero_last(server):
    """BDAT data is counted, not parsed: a lone dot and leading dots are content (no unstuffing)."""
    token = unique_token("bdatbin")
    body = b"\r\n.\r\nline after a lone dot\r\n..two dots stay two\r\n"
    msg = build_message(token).encode() + body
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<b@client.test>\r\n")
        c.send(b"RCPT TO:<alice@example.test>\r\nBDAT %d\r\n%sBDAT 0 LAST\r\n" % (len(msg), msg))
        replies = [c.reply() for _ in range(4)]
        assert [r[0] for r in replies] == [250, 250, 250, 250], replies
    m = server.wait_for_message(ALICE, token)
    assert lf(m).endswith(lf(body)), m[-200:]


def test_bdat_after_data_mixing_refused(server):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<b@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        c.send(b"BDAT 5\r\nabcde")
        assert c.reply()[0] == 250
        code, text = c.cmd("DATA")
        assert code == 503, (code, text)


def test_8bitmime_body_intact(server):
    token = unique_token("8bit")
    body = "Grüße aus Köln – ½ € ✓\r\n".encode("utf-8")
    msg = (build_message(token, extra_headers="Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: 8bit\r\n", body="")).encode() + body
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<e@client.test> BODY=8BITMIME")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(msg))
        assert c.reply()[0] == 250
    m = server.wait_for_message(ALICE, token)
    assert lf(m).endswith(lf(body))


def test_smtputf8_sender(server):
    token = unique_token("utf8")
    sender = "δοκιμή@παράδειγμα.δοκιμή"
    msg = build_message(token, sender=sender).encode("utf-8")
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        code, text = c.cmd(("MAIL FROM:<%s> SMTPUTF8" % sender).encode("utf-8"))
        assert code == 250, text
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(msg))
        code, text = c.reply()
        assert code == 250, text
    m = server.wait_for_message(ALICE, token)
    assert ("Return-Path: <%s>" % sender).encode("utf-8") in m


def test_utf8_address_without_smtputf8_refused(server):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή>".encode("utf-8"))
        assert 500 <= code < 600, (code, text)


def test_smtputf8_with_smtplib(server):
    token = unique_token("utf8lib")
    s = smtplib.SMTP("127.0.0.1", server.ports["mx"], timeout=30)
    try:
        s.ehlo("client.test")
        assert s.has_extn("smtputf8")
        msg = build_message(token, sender="jörg@bücher.test").encode("utf-8")
        refused = s.sendmail("jörg@bücher.test", [ALICE], msg, mail_options=["SMTPUTF8"])
        assert refused == {}
    finally:
        s.quit()
    server.wait_for_message(ALICE, token)


def test_dsn_parameters_accepted(server):
    token = unique_token("dsn")
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<d@client.test> RET=HDRS ENVID=QQ314159")
        assert code == 250, text
        code, text = c.cmd("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.test")
        assert code == 250, text
        code, text = c.cmd("RCPT TO:<bob@example.test> NOTIFY=NEVER")
        assert code == 250, text
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token)))
        assert c.reply()[0] == 250
    server.wait_for_message(ALICE, token)
    server.wait_for_message(BOB, token)


@pytest.mark.parametrize("param", ["NOTIFY=BOGUS", "NOTIFY=NEVER,SUCCESS", "ORCPT=alice@example.test"])
def test_dsn_bad_rcpt_parameters(server, param):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<d@client.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<alice@example.test> " + param)
        assert code in (501, 555), (param, code, text)


def test_size_parameter_within_limit(server):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<s@client.test> SIZE=1000")
        assert code == 250, text


def test_swaks_plain(server):
    token = unique_token("swaks")
    p = swaks("--server", "127.0.0.1", "--port", str(server.ports["mx"]), "--ehlo", "client.test",
              "--from", "swaks@client.test", "--to", ALICE, "--header", "Subject: " + token,
              "--body", "swaks body " + token)
    assert p.returncode == 0, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    m = server.wait_for_message(ALICE, token)
    assert b"swaks body " + token.encode() in m


def test_swaks_pipelining(server):
    token = unique_token("swakspipe")
    p = swaks("--server", "127.0.0.1", "--port", str(server.ports["mx"]), "--pipeline",
              "--from", "swaks@client.test", "--to", BOB, "--header", "Subject: " + token)
    assert p.returncode == 0, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    server.wait_for_message(BOB, token)


def test_queue_list_empty_after_concurrent_delivery(server):
    """Once every message is in the Maildir, `queue list` must stop listing them, also when
    `queue list` ran while the server was busy (the CLI and the server share the queue)."""
    sender = "qlist-%s@client.test" % unique_token("s").replace("-", "")
    per_conn, conns = 20, 15
    tokens = [[unique_token("ql") for _ in range(per_conn)] for _ in range(conns)]
    results = []
    stop = threading.Event()

    def send(toks):
        with RawSMTP(server.ports["mx"]) as c:
            c.ehlo()
            for tok in toks:
                assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
                assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
                assert c.cmd("DATA")[0] == 354
                c.send(data_payload(build_message(tok, sender=sender)))
                results.append(c.reply()[0])

    def poll():
        while not stop.is_set():
            server.cli("queue", "list", check=False)
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    threads = [threading.Thread(target=send, args=(t,)) for t in tokens]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        stop.set()
        poller.join(60)
    assert results == [250] * (per_conn * conns), results
    for toks in tokens:
        for tok in toks:
            server.wait_for_message(ALICE, tok)

    def listed():
        out = server.cli("queue", "list").stdout.decode(errors="replace")
        return [l for l in out.splitlines() if sender in l]

    try:
        wait_until(lambda: not listed(), 20, what="queue list to forget delivered messages")
    except AssertionError:
        raise AssertionError("all %d messages are delivered but `queue list` still shows %d of them 20 s later:\n%s"
                             % (per_conn * conns, len(listed()), "\n".join(listed()[:5])))
