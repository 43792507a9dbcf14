"""
Sender authentication end to end (issue 6): SPF at MAIL FROM, DKIM verification,
DMARC reject/quarantine, Authentication-Results, DKIM signing on submission and
the submission sender checks, through the real server and a local unbound that
serves the test zones.
"""
import base64
import os
import shutil
import subprocess
import tempfile
import time

import dkim
import dns.resolver
import pytest

from conftest import (USERS, RawSMTP, build_message, data_payload, free_port, header_block, make_tmpdir,
                      unique_token, wait_until)

ALICE = "alice@example.test"
BOB = "bob@example.test"
AUTHSERV = "mx.example.test"   # conftest's hostname: the default authserv-id
SELECTOR = "s2024"


def _openssl_rsa_key():
    """(private PEM bytes, public key base64) of a fresh 2048-bit RSA key."""
    priv = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                          check=True, capture_output=True, timeout=60).stdout
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=priv,
                         check=True, capture_output=True, timeout=60).stdout
    return priv, base64.b64encode(der).decode()


def _txt(name, text):
    """An unbound local-data TXT line; long texts split into 200-byte character-strings."""
    parts = [text[i:i + 200] for i in range(0, len(text), 200)] or [""]
    return "%s. 300 IN TXT %s" % (name, " ".join('"%s"' % p for p in parts))


class Unbound:
    def __init__(self, records, port, dead_zone=None):
        self.dir = make_tmpdir("mailroute-e2e-unbound-")
        self.port = port
        conf = os.path.join(self.dir, "unbound.conf")
        lines = [
            "server:",
            "  interface: 127.0.0.1@%d" % self.port,
            "  port: %d" % self.port,
            "  do-ip6: no",
            "  do-not-query-localhost: no",
            '  chroot: ""',
            '  username: ""',
            '  pidfile: ""',
            '  directory: "%s"' % self.dir,
            '  logfile: "%s/unbound.log"' % self.dir,
            "  use-syslog: no",
            "  verbosity: 1",
            "  num-threads: 1",
            "  so-reuseport: no",
            '  module-config: "iterator"',
            "  access-control: 127.0.0.0/8 allow",
            '  local-zone: "test." static',
            "  local-data: 'test. 300 IN SOA ns.test. admin.test. 1 3600 600 86400 30'",
        ]
        lines += ["  local-data: '%s'" % r for r in records]
        if dead_zone:
            # delegated to a server that does not answer: every lookup there fails
            lines += ["stub-zone:", '  name: "%s."' % dead_zone, "  stub-addr: 127.0.0.1@%d" % free_port()]
        lines += ["remote-control:", "  control-enable: no"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["/usr/sbin/unbound", "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.resolver = dns.resolver.Resolver(configure=False)
        self.resolver.nameservers = ["127.0.0.1"]
        self.resolver.port = self.port
        self.resolver.lifetime = 5

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("unbound exited: %s" % open(os.path.join(self.dir, "unbound.log")).read())
            try:
                self.resolver.resolve("_dmarc.signed.test", "TXT")
                return True
            except Exception:
                return False
        wait_until(up, 15, what="unbound to answer")

    def txt(self, name):
        ans = self.resolver.resolve(name.rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in ans)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(make_server):
    signed_priv, signed_pub = _openssl_rsa_key()
    dns_port = free_port()
    srv = make_server("mailauth", start=False, extra_config=(
        "dns:\n  forward: [\"127.0.0.1@%d\"]\nmail_auth: true\n" % dns_port),
        limits={"command_timeout": 120, "data_timeout": 120})
    srv.cli("alias", "add", "sales@example.test", ALICE)
    # our signing key, made the documented way
    out = srv.cli("dkim", "keygen", "example.test", "--selector", SELECTOR).stdout.decode()
    record = out.split('IN TXT "', 1)[1].rsplit('"', 1)[0]
    # The lookup role (cfg->user) signs; `dkim keygen` hands the key to vmail_user (see the report).
    keydir = os.path.join(srv.data_dir, "dkim")
    subprocess.run(["chown", "-R", "mailroute:mailroute", keydir], check=True)
    records = [
        _txt("spf-fail.test", "v=spf1 -all"),
        _txt("spf-pass.test", "v=spf1 ip4:127.0.0.1 -all"),
        _txt("signed.test", "v=spf1 ?all"),
        _txt("sel1._domainkey.signed.test", "v=DKIM1; k=rsa; p=" + signed_pub),
        _txt("_dmarc.signed.test", "v=DMARC1; p=reject"),
        _txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine"),
        _txt("_dmarc.relaxed.test", "v=DMARC1; p=none"),
        _txt("_dmarc.parent.test", "v=DMARC1; p=none; sp=reject"),
        _txt("_dmarc.sampled.test", "v=DMARC1; p=reject; pct=0"),
        _txt("%s._domainkey.example.test" % SELECTOR, record),
    ]
    ub = Unbound(records, dns_port, dead_zone="dead.example")  # on the port the server's config names
    try:
        srv.start()
        yield {"srv": srv, "dns": ub, "signed_key": signed_priv, "record": record}
    finally:
        ub.stop()


# ---------------------------------------------------------------- helpers

def mx_send(srv, sender, rcpt, message, ehlo="client.test"):
    """Plain SMTP to the mx listener; returns the reply to the end of data (or to MAIL)."""
    with RawSMTP(srv.ports["mx"]) as c:
        c.ehlo(ehlo)
        code, text = c.cmd("MAIL FROM:<%s>" % sender)
        if code != 250:
            return code, text
        code, text = c.cmd("RCPT TO:<%s>" % rcpt)
        assert code == 250, (code, text)
        code, text = c.cmd("DATA")
        assert code == 354, (code, text)
        c.send(data_payload(message))
        res = c.reply()
        c.send("QUIT\r\n")
        return res


def submission(srv, user):
    c = RawSMTP(srv.ports["submission"])
    c.ehlo()
    c.starttls()
    c.ehlo()
    cred = base64.b64encode(("\0%s\0%s" % (user, USERS[user])).encode()).decode()
    code, text = c.cmd("AUTH PLAIN " + cred)
    assert code == 235, (code, text)
    return c


def dkim_sign(message, domain, selector, key):
    if isinstance(message, str):
        message = message.encode()
    sig = dkim.sign(message, selector.encode(), domain.encode(), key,
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + message


def junk_messages(srv, address):
    d = os.path.join(srv.maildir(address), ".Junk", "new")
    out = []
    for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, n), "rb") as f:
            out.append(f.read())
    return out


def authres(msg):
    return [h for h in header_block(msg) if h.lower().startswith("authentication-results:")]


# ---------------------------------------------------------------- SPF

def test_spf_fail_rejected_at_mail_from(env):
    code, text = mx_send(env["srv"], "ceo@spf-fail.test", ALICE, build_message("x"))
    assert code == 550 and text.startswith("5.7.23"), (code, text)


def test_spf_fail_pipelined(env):
    """The MAIL reply waits for SPF; the pipelined RCPT and DATA then see no transaction."""
    with RawSMTP(env["srv"].ports["mx"]) as c:
        c.ehlo()
        c.send("MAIL FROM:<ceo@spf-fail.test>\r\nRCPT TO:<%s>\r\nDATA\r\n" % ALICE)
        code, text = c.reply()
        assert code == 550 and text.startswith("5.7.23"), (code, text)
        assert c.reply()[0] == 503
        assert c.reply()[0] in (503, 554)
        # the session goes on: a good sender is accepted afterwards
        assert c.cmd("MAIL FROM:<ok@spf-pass.test>")[0] == 250


def test_spf_pass_tagged(env):
    token = unique_token("spfpass")
    code, text = mx_send(env["srv"], "news@spf-pass.test", ALICE,
                         build_message(token, sender="news@spf-pass.test"))
    assert code == 250, (code, text)
    m = env["srv"].wait_for_message(ALICE, token)
    ar = authres(m)
    assert len(ar) == 1 and ar[0].split(":", 1)[1].strip().startswith(AUTHSERV + ";"), ar
    assert "spf=pass" in ar[0] and "smtp.mailfrom=news@spf-pass.test" in ar[0], ar
    assert "dkim=none" in ar[0], ar


# ---------------------------------------------------------------- DKIM + DMARC

def test_dkim_signed_passes_dmarc_reject_domain(env):
    token = unique_token("signed")
    msg = dkim_sign(build_message(token, sender="ceo@signed.test"), "signed.test", "sel1", env["signed_key"])
    code, text = mx_send(env["srv"], "bounce@signed.test", ALICE, msg)
    assert code == 250, (code, text)
    m = env["srv"].wait_for_message(ALICE, token)
    ar = authres(m)
    assert len(ar) == 1, ar
    assert "dkim=pass" in ar[0] and "header.d=signed.test" in ar[0], ar
    assert "dmarc=pass" in ar[0] and "header.from=signed.test" in ar[0], ar
    # Authentication-Results is above our Received: (prepended at delivery)
    names = [h.split(":", 1)[0].lower() for h in header_block(m)]
    assert names.index("authentication-results") < names.index("received"), names


def test_dmarc_reject_unsigned_after_data(env):
    token = unique_token("forged")
    code, text = mx_send(env["srv"], "someone@client.test", ALICE, build_message(token, sender="ceo@signed.test"))
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    assert "DMARC" in text, text
    env["srv"].barrier()
    env["srv"].assert_absent(token)


def test_dmarc_reject_tampered_signature(env):
    token = unique_token("tampered")
    msg = dkim_sign(build_message(token, sender="ceo@signed.test"), "signed.test", "sel1", env["signed_key"])
    msg = msg.replace(b"Second line.", b"Second line, changed.")
    code, text = mx_send(env["srv"], "bounce@signed.test", ALICE, msg)
    assert code == 550 and text.startswith("5.7.1"), (code, text)


def test_dmarc_reject_bdat(env):
    """The same end-of-data check for BDAT LAST."""
    token = unique_token("bdat")
    body = build_message(token, sender="ceo@signed.test").encode()
    with RawSMTP(env["srv"].ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        code, text = c.reply()
        assert code == 550 and text.startswith("5.7.1"), (code, text)
        # the transaction is over; the session is still usable
        assert c.cmd("RSET")[0] == 250


def test_dmarc_quarantine_goes_to_junk(env):
    token = unique_token("junk")
    srv = env["srv"]
    code, text = mx_send(srv, "x@client.test", ALICE, build_message(token, sender="promo@quarantine.test"))
    assert code == 250, (code, text)
    m = wait_until(lambda: [x for x in junk_messages(srv, ALICE) if token.encode() in x], 30,
                   what="quarantined message in .Junk/new")
    assert len(m) == 1
    ar = authres(m[0])
    assert ar and "dmarc=fail" in ar[0] and "quarantine" in ar[0], ar
    srv.barrier()
    assert not srv.find(ALICE, token), "quarantined message must not be in the INBOX"


def test_dmarc_none_policy_delivered_to_inbox(env):
    token = unique_token("pnone")
    code, text = mx_send(env["srv"], "x@client.test", ALICE, build_message(token, sender="a@relaxed.test"))
    assert code == 250, (code, text)
    m = env["srv"].wait_for_message(ALICE, token)
    assert "dmarc=fail" in authres(m)[0], authres(m)


def test_dmarc_subdomain_policy(env):
    """sp=reject of the organizational domain applies to a subdomain without its own record."""
    token = unique_token("sp")
    code, text = mx_send(env["srv"], "x@client.test", ALICE, build_message(token, sender="a@mail.parent.test"))
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    # the parent domain itself has p=none
    token = unique_token("p")
    code, text = mx_send(env["srv"], "x@client.test", ALICE, build_message(token, sender="a@parent.test"))
    assert code == 250, (code, text)


def test_dmarc_pct_zero_lowers_reject_to_quarantine(env):
    """pct=0: no message is sampled for p=reject; the next policy down (quarantine) applies."""
    token = unique_token("pct")
    srv = env["srv"]
    code, text = mx_send(srv, "x@client.test", ALICE, build_message(token, sender="a@sampled.test"))
    assert code == 250, (code, text)
    wait_until(lambda: [x for x in junk_messages(srv, ALICE) if token.encode() in x], 30,
               what="pct=0 message in .Junk/new")


def test_forged_authres_is_removed(env):
    """RFC 8601 5: a field that came with the message claiming our id is removed at delivery;
    ours is the only one left, and fields of other authserv-ids stay."""
    token = unique_token("forgedar")
    fake = ("Authentication-Results: %s; dmarc=pass header.from=signed.test\r\n"
            "Authentication-Results: other.example; spf=pass smtp.mailfrom=x@y.test\r\n" % AUTHSERV)
    code, text = mx_send(env["srv"], "news@spf-pass.test", ALICE,
                         build_message(token, sender="news@spf-pass.test", extra_headers=fake))
    assert code == 250, (code, text)
    m = env["srv"].wait_for_message(ALICE, token)
    ar = authres(m)
    ours = [a for a in ar if AUTHSERV + ";" in a]
    assert len(ours) == 1 and "spf=pass" in ours[0] and "header.from=signed.test" not in ours[0], ar
    assert any("other.example;" in a for a in ar), ar


def test_dns_failure_is_temperror_not_rejection(env):
    """The sender's DNS is down: SPF and DMARC give temperror, the mail is accepted and tagged."""
    token = unique_token("deaddns")
    t0 = time.monotonic()
    code, text = mx_send(env["srv"], "x@dead.example", ALICE, build_message(token, sender="x@dead.example"))
    assert code == 250, (code, text)
    assert time.monotonic() - t0 < 60
    m = env["srv"].wait_for_message(ALICE, token)
    ar = authres(m)
    assert ar and "spf=temperror" in ar[0], ar


# ---------------------------------------------------------------- submission

def test_submission_signs_with_keygen_key(env):
    token = unique_token("dkimsign")
    srv = env["srv"]
    c = submission(srv, ALICE)
    try:
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token, sender=ALICE, to=BOB)))
        code, text = c.reply()
        assert code == 250, (code, text)
    finally:
        c.close()
    m = srv.wait_for_message(BOB, token)
    sigs = [h for h in header_block(m) if h.lower().startswith("dkim-signature:")]
    assert len(sigs) == 1 and "d=example.test" in sigs[0] and "s=%s" % SELECTOR in sigs[0], sigs
    # verify against the record the unbound zone publishes
    published = env["dns"].txt("%s._domainkey.example.test" % SELECTOR)

    def dnsfunc(name, timeout=5):
        return env["dns"].txt(name.decode() if isinstance(name, bytes) else name)
    assert published.decode() == env["record"]
    assert dkim.verify(m, dnsfunc=dnsfunc), "dkimpy does not verify our signature"
    # no Authentication-Results for our own users' mail
    assert not authres(m), authres(m)


def test_submission_envelope_sender_of_other_user_553(env):
    c = submission(env["srv"], ALICE)
    try:
        code, text = c.cmd("MAIL FROM:<%s>" % BOB)
        assert code == 553 and text.startswith("5.7.1"), (code, text)
        code, text = c.cmd("MAIL FROM:<someone@remote.test>")
        assert code == 553 and text.startswith("5.7.1"), (code, text)
        # own address and an alias that resolves to alice are fine
        assert c.cmd("MAIL FROM:<sales@example.test>")[0] == 250
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<Alice@example.test>")[0] == 250
    finally:
        c.close()


def test_submission_from_header_of_other_user_553(env):
    token = unique_token("fromhdr")
    srv = env["srv"]
    c = submission(srv, ALICE)
    try:
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token, sender=BOB, to=BOB)))
        code, text = c.reply()
        assert code == 553 and text.startswith("5.7.1"), (code, text)
        # a display name and an alias in From: are fine
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        assert c.cmd("DATA")[0] == 354
        msg = build_message(token + "-ok", sender=ALICE, to=BOB).replace(
            "From: <%s>" % ALICE, 'From: "Sales, Team" <sales@example.test>')
        c.send(data_payload(msg))
        code, text = c.reply()
        assert code == 250, (code, text)
    finally:
        c.close()
    srv.wait_for_message(BOB, token + "-ok")
    srv.assert_absent(token + "\r", (BOB,))


def test_key_rotation_newest_selector_signs(env):
    """A second `dkim keygen` selector for the domain is used from the next message on (runs last)."""
    srv = env["srv"]
    time.sleep(0.05)  # a later mtime than the first key
    out = srv.cli("dkim", "keygen", "example.test", "--selector", "s2025").stdout.decode()
    record = out.split('IN TXT "', 1)[1].rsplit('"', 1)[0]
    subprocess.run(["chown", "-R", "mailroute:mailroute", os.path.join(srv.data_dir, "dkim")], check=True)
    token = unique_token("rotate")
    c = submission(srv, ALICE)
    try:
        assert c.cmd("MAIL FROM:<%s>" % ALICE)[0] == 250
        assert c.cmd("RCPT TO:<%s>" % BOB)[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(data_payload(build_message(token, sender=ALICE, to=BOB)))
        assert c.reply()[0] == 250
    finally:
        c.close()
    m = srv.wait_for_message(BOB, token)
    sigs = [h for h in header_block(m) if h.lower().startswith("dkim-signature:")]
    assert len(sigs) == 1 and "s=s2025" in sigs[0], sigs

    def dnsfunc(name, timeout=5):
        return record.encode() if name.decode().startswith("s2025._domainkey.example.test") else None
    assert dkim.verify(m, dnsfunc=dnsfunc)
