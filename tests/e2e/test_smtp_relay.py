"""Never an open relay: every classic trick on the mx listener without AUTH must be refused at RCPT."""
import pytest

from conftest import RawSMTP, build_message, data_payload, unique_token

# (recipient as written inside RCPT TO:, why it is a trick)
TRICKS = [
    ("<victim@remote.test>", "plain remote domain"),
    ("<VICTIM@REMOTE.TEST>", "uppercase remote"),
    ("<Victim@Remote.Test>", "mixed case remote"),
    ("<victim@remote.test.>", "trailing dot"),
    ("<VICTIM@REMOTE.TEST.>", "trailing dot uppercase"),
    ("<victim@remote.test..>", "two trailing dots"),
    ("<victim%remote.test@example.test>", "percent hack via local domain"),
    ("<VICTIM%REMOTE.TEST@EXAMPLE.TEST>", "percent hack uppercase"),
    ("<victim%remote.test@example.test.>", "percent hack + trailing dot"),
    ("<victim%remote.test>", "percent hack without domain"),
    ("<remote.test!victim@example.test>", "bang path via local domain"),
    ("<REMOTE.TEST!VICTIM@EXAMPLE.TEST>", "bang path uppercase"),
    ("<remote.test!victim>", "bang path without domain"),
    ("<other.test!remote.test!victim@example.test>", "double bang path"),
    ("<@example.test:victim@remote.test>", "source route via local domain"),
    ("<@EXAMPLE.TEST:VICTIM@REMOTE.TEST>", "source route uppercase"),
    ("<@example.test,@mx.example.test:victim@remote.test>", "source route, two hops"),
    ("<\"victim@remote.test\"@example.test>", "quoted local part holding @"),
    ("<\"victim@remote.test\">", "quoted local part holding @, no domain"),
    ("<\"victim%remote.test\"@example.test>", "quoted local part holding %"),
    ("<\"victim\"@remote.test>", "quoted local part, remote domain"),
    ("<victim@remote.test@example.test>", "two @, local last"),
    ("<alice@example.test@remote.test>", "two @, remote last"),
    ("<victim@remote.test%example.test>", "percent in domain"),
    ("<victim@[192.0.2.1]>", "IPv4 literal"),
    ("<victim@[127.0.0.1]>", "IPv4 literal of this host"),
    ("<victim@[IPv6:::1]>", "IPv6 literal of this host"),
    ("<victim@[IPV6:2001:db8::1]>", "IPv6 literal uppercase tag"),
    ("<victim%remote.test@[127.0.0.1]>", "percent hack via IP literal"),
    ("<victim@sub.example.test>", "subdomain of a local domain"),
    ("<victim@example.test.remote.test>", "local domain as prefix"),
    ("<victim@xample.test>", "near miss of local domain"),
    ("<victim@localhost>", "localhost"),
    ("<victim@localhost.>", "localhost with trailing dot"),
    ("<victim@remote.test >", "space before >"),
    ("< victim@remote.test>", "space after <"),
    ("victim@remote.test", "no angle brackets"),
    (" <victim@remote.test>", "space after colon"),
    ("<victim@remote.test> NOTIFY=NEVER", "with DSN parameter"),
    ("<victim@xn--rmote-fsa.test>", "IDN A-label remote"),
    ("<>", "null recipient"),
    ("<@>", "empty route"),
    ("<victim@>", "empty domain"),
    ("<victim@remote.test\t>", "tab inside"),
]


def _session(server, sender="someone@client.test"):
    c = RawSMTP(server.ports["mx"])
    c.ehlo()
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    assert code == 250, (code, text)
    return c


def test_plain_relay_denied_554_571(server):
    with _session(server) as c:
        code, text = c.cmd("RCPT TO:<victim@remote.test>")
        assert code == 554 and text.startswith("5.7.1"), (code, text)


@pytest.mark.parametrize("rcpt,why", TRICKS, ids=[t[1] for t in TRICKS])
def test_relay_trick_refused(server, rcpt, why):
    with _session(server) as c:
        code, text = c.cmd("RCPT TO:" + rcpt)
        assert 500 <= code < 600, "%s: RCPT TO:%s got %d %s" % (why, rcpt, code, text)
        # nothing was accepted, so DATA must not open
        code, text = c.cmd("DATA")
        assert code in (503, 554), "%s: DATA after refused RCPT got %d %s" % (why, code, text)


@pytest.mark.parametrize("sender", ["alice@example.test", "ALICE@EXAMPLE.TEST", "", "postmaster@example.test",
                                    "victim@remote.test"])
def test_local_sender_does_not_open_relay(server, sender):
    with _session(server, sender=sender) as c:
        code, text = c.cmd("RCPT TO:<victim@remote.test>")
        assert code == 554 and text.startswith("5.7.1"), (sender, code, text)


@pytest.mark.parametrize("helo", ["mx.example.test", "localhost", "[127.0.0.1]", "example.test"])
def test_helo_spoof_does_not_open_relay(server, helo):
    with RawSMTP(server.ports["mx"]) as c:
        c.ehlo(helo)
        assert c.cmd("MAIL FROM:<x@client.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<victim@remote.test>")
        assert code == 554, (helo, code, text)


def test_tls_without_auth_does_not_open_relay(server):
    c = RawSMTP(server.ports["mx"])
    try:
        c.ehlo()
        c.starttls()
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@client.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<victim@remote.test>")
        assert code == 554 and text.startswith("5.7.1"), (code, text)
    finally:
        c.close()


def test_submission_without_auth_cannot_relay(server):
    c = RawSMTP(server.ports["submission"])
    try:
        c.ehlo()
        c.starttls()
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<alice@example.test>")
        assert code == 530, (code, text)
        code, text = c.cmd("RCPT TO:<victim@remote.test>")
        assert 500 <= code < 600, (code, text)
    finally:
        c.close()


def test_mixed_transaction_delivers_only_local(server):
    """A refused relay recipient next to a local one: only the local copy exists."""
    token = unique_token("mixed")
    with _session(server) as c:
        assert c.cmd("RCPT TO:<victim@remote.test>")[0] == 554
        assert c.cmd("RCPT TO:<victim%remote.test@example.test>")[0] >= 500
        assert c.cmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token, to="victim@remote.test")))
        assert c.reply()[0] == 250
    server.wait_for_message("alice@example.test", token)


def test_nothing_queued_for_remote(server):
    """After all of the above, the queue holds nothing addressed outside (runs after the tricks)."""
    server.barrier()
    p = server.cli("queue", "list")
    out = p.stdout.decode(errors="replace").lower()
    # every trick above uses the local part "victim"; legitimate tests never do
    for needle in ("victim", "192.0.2.1"):
        assert needle not in out, "queue holds a relayed message:\n" + out
