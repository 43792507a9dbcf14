"""
Forwarding that keeps passing (sender-authentication issue): mail for an alias
of ours that forwards to an outside address leaves with an SRS envelope sender
(SRS0=HASH=TT=domain=local@<srs domain>) and an ARC set (RFC 8617) sealed with
our DKIM key; bounces to the SRS address are reversed and delivered; forged or
expired SRS addresses are refused at RCPT (550 5.1.1 invalid SRS address).

Setup: the real server with `srs:`, `mail_auth: true` and a local unbound
(SPF of the outside sender passes, so our Authentication-Results is in the
envelope); other.test (the forward target) and remote.test (the original
sender's domain) have transports to in-process SMTP receivers.
The ARC set is checked with dkimpy's arc_verify, the key served by a dnsfunc.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import time

import dkim
import pytest

from conftest import RawSMTP, build_message, data_payload, finish_server, free_port, unique_token, wait_until
from outbound_helpers import LocalUnbound, Receiver

SECRET = "e2e-srs-secret-0123456789"
SRS_DOMAIN = "srs.example.test"
SELECTOR = "arc1"
ALIAS = "fwd@example.test"            # ours, forwards outside
FRIEND = "friend@other.test"          # the outside address
SENDER = "bob@remote.test"            # an outside sender (SPF passes from 127.0.0.1)
ALICE = "alice@example.test"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def srs0(local, domain, secret=SECRET, day=None):
    """SRS0 as srs.h specifies: HMAC-SHA256 over the lowercased parts (each
    NUL-terminated), first 40 bits in base32; TT = day number mod 1024."""
    if day is None:
        day = int(time.time()) // 86400
    day %= 1024
    tt = B32[day >> 5] + B32[day & 31]
    data = b"".join(p.lower().encode() + b"\0" for p in (tt, domain, local))
    h = base64.b32encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()[:5]).decode()
    return "SRS0=%s=%s=%s=%s@%s" % (h, tt, domain, local, SRS_DOMAIN)


def pick_port(ips):
    for _ in range(50):
        port = free_port()
        try:
            for ip in ips:
                r = Receiver(ip, port)
                r.start()
                r.stop()
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port")


@pytest.fixture(scope="module")
def env(make_server):
    other_ip, remote_ip = "127.0.0.61", "127.0.0.62"
    port = pick_port([other_ip, remote_ip])
    dns = LocalUnbound(['remote.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"'])  # started below
    srv = make_server("srsarc", start=False, extra_config=(
        'dns:\n  forward: ["%s"]\n'
        "mail_auth: true\n"
        "queue: { retry_min: 1, retry_max: 2 }\n"
        "outbound: { tls: none, connect_timeout: 3, command_timeout: 15 }\n"
        'srs: { secret: "%s", domain: %s }\n' % (dns.forwarder, SECRET, SRS_DOMAIN)),
        limits={"command_timeout": 120, "data_timeout": 120})
    # outside domains reached through transports (an alias target is routed like any remote address)
    for name, ip in (("other", other_ip), ("remote", remote_ip)):
        srv.cli("relay", "add", name, "--host", "%s:%d" % (ip, port), "--tls", "none")
        srv.cli("transport", "set", name + ".test", name)
    srv.cli("alias", "add", ALIAS, FRIEND)
    out = srv.cli("dkim", "keygen", SRS_DOMAIN, "--selector", SELECTOR).stdout.decode()
    record = out.split('IN TXT "', 1)[1].rsplit('"', 1)[0]
    # the queue role (user mailroute) seals: it must read the key (`dkim keygen` hands it to vmail_user)
    subprocess.run(["chown", "-R", "mailroute:mailroute", os.path.join(srv.data_dir, "dkim")], check=True)
    # our ARC key in DNS too, so a message we sealed validates when it comes back to us
    parts = [record[i:i + 200] for i in range(0, len(record), 200)]
    dns.records.append("%s._domainkey.%s. 300 IN TXT %s" % (SELECTOR, SRS_DOMAIN, " ".join('"%s"' % x for x in parts)))
    dns.start()
    other = Receiver(other_ip, port, name="other").start()
    remote = Receiver(remote_ip, port, name="remote").start()
    try:
        srv.start()
        yield {"srv": srv, "other": other, "remote": remote, "record": record}
        finish_server(srv)
    finally:
        other.stop()
        remote.stop()
        dns.cleanup()


def mx_session(srv, sender, rcpts, message):
    with RawSMTP(srv.ports["mx"]) as c:
        c.ehlo()
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


def rcpt_reply(srv, rcpt, sender=""):
    with RawSMTP(srv.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<%s>" % sender)[0] == 250
        return c.cmd("RCPT TO:<%s>" % rcpt)


def received(receiver, token, timeout=30):
    return wait_until(lambda: [m for m in receiver.accepted() if token in m["data"]], timeout,
                      what="%s at %s" % (token, receiver.name))


def forward_one(env, token=None):
    token = token or unique_token("fwd")
    msg = build_message(token, sender=SENDER, to=ALIAS)
    code, text = mx_session(env["srv"], SENDER, [ALIAS], msg)
    assert code == 250, (code, text)
    got = received(env["other"], token)
    assert len(got) == 1, got
    return got[0]


def mail_from(m):
    return re.match(r"<([^>]*)>", m["sender"]).group(1)


def dnsfunc_for(record):
    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        if name.rstrip(".").lower() == "%s._domainkey.%s" % (SELECTOR, SRS_DOMAIN):
            return record.encode()
        return None
    return dnsfunc


def test_forward_gets_srs_sender(env):
    m = forward_one(env)
    frm = mail_from(m)
    assert re.fullmatch(r"SRS0=[A-Z2-7]{8}=[A-Z2-7]{2}=remote\.test=bob@srs\.example\.test", frm), frm
    assert frm == srs0("bob", "remote.test"), (frm, srs0("bob", "remote.test"))
    assert m["rcpts"] == ["<%s>" % FRIEND] or m["rcpts"][0].startswith("<%s>" % FRIEND), m["rcpts"]


def test_forward_gets_arc_set_that_verifies(env):
    m = forward_one(env)
    data = m["data"]
    head = data.split("\r\n\r\n", 1)[0]
    names = [l.split(":", 1)[0].lower() for l in head.split("\r\n") if l and l[0] not in " \t"]
    # the ARC set comes first, then our Authentication-Results, then the message
    assert names[:4] == ["arc-seal", "arc-message-signature", "arc-authentication-results",
                         "authentication-results"], names[:6]
    aar = [l for l in head.split("\r\n") if l.lower().startswith("arc-authentication-results:")][0]
    assert aar.startswith("ARC-Authentication-Results: i=1; mx.example.test;"), aar
    assert "spf=pass" in aar, aar
    seal = [l for l in head.split("\r\n") if l.startswith("ARC-Seal:")][0]
    assert "cv=none" in seal and "d=%s" % SRS_DOMAIN in seal and "s=%s" % SELECTOR in seal, seal
    cv, results, comment = dkim.arc_verify(data.encode(), dnsfunc=dnsfunc_for(env["record"]))
    assert cv == b"pass", (cv, results, comment)


def seals_of(m):
    head = m["data"].split("\r\n\r\n", 1)[0]
    return [l for l in head.split("\r\n") if l.startswith("ARC-Seal:")], head


def second_hop(env, first, token):
    """Send a sealed message back to us as the next hop would: our inbound
    arc_verify validates it; it is forwarded again with a second set."""
    code, text = mx_session(env["srv"], SENDER, [ALIAS], first["data"])
    assert code == 250, (code, text)
    return wait_until(lambda: [m for m in env["other"].accepted() if token in m["data"]
                               and len(seals_of(m)[0]) == 2], 30, what="second hop of %s" % token)[0]


def test_forward_of_forward_keeps_the_chain(env):
    """A message arriving with a valid ARC chain (our own i=1 here, the key is
    in DNS) is sealed again with i=2 and cv=pass; dkimpy verifies the chain."""
    token = unique_token("arc2")
    m = second_hop(env, forward_one(env, token), token)
    seals, head = seals_of(m)
    assert "i=2" in seals[0] and "cv=pass" in seals[0], seals[0]
    aar = [l for l in head.split("\r\n") if l.startswith("ARC-Authentication-Results: i=2;")]
    assert aar and "arc=pass" in aar[0], head
    cv, results, comment = dkim.arc_verify(m["data"].encode(), dnsfunc=dnsfunc_for(env["record"]))
    assert cv == b"pass", (cv, results, comment)


def test_broken_chain_sealed_with_cv_fail(env):
    """The chain broke on the way (the body changed): our receipt check says
    arc=fail and the new set carries cv=fail; dkimpy agrees the chain fails."""
    token = unique_token("arcbroken")
    first = forward_one(env, token)
    first = dict(first, data=first["data"].replace("Second line.", "Second line, changed."))
    m = second_hop(env, first, token)
    seals, head = seals_of(m)
    assert "i=2" in seals[0] and "cv=fail" in seals[0], seals[0]
    cv, results, comment = dkim.arc_verify(m["data"].encode(), dnsfunc=dnsfunc_for(env["record"]))
    # dkimpy reports a chain whose newest seal says cv=fail as terminated (cv None)
    assert cv != b"pass" and "reported failure" in comment, (cv, results, comment)


def test_bounce_to_srs_address_reaches_remote_sender(env):
    m = forward_one(env)
    srs = mail_from(m)
    token = unique_token("bounce-remote")
    bounce = ("From: MAILER-DAEMON@other.test\r\nTo: <%s>\r\nSubject: %s\r\n"
              "Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n" % (srs, token))
    code, text = mx_session(env["srv"], "", [srs], bounce)
    assert code == 250, (code, text)
    got = received(env["remote"], token)
    assert got[0]["rcpts"][0].startswith("<%s>" % SENDER), got[0]["rcpts"]
    assert got[0]["sender"].startswith("<>"), got[0]["sender"]


def test_bounce_to_srs_address_of_local_sender_lands_in_maildir(env):
    srv = env["srv"]
    srs = srs0("alice", "example.test")
    token = unique_token("bounce-local")
    bounce = ("From: MAILER-DAEMON@other.test\r\nTo: <%s>\r\nSubject: %s\r\n\r\nBounced.\r\n" % (srs, token))
    code, text = mx_session(srv, "", [srs], bounce)
    assert code == 250, (code, text)
    msg = srv.wait_for_message(ALICE, token)
    assert b"Bounced." in msg
    # the MTA that bounced may have changed the case of the local part
    token2 = unique_token("bounce-case")
    code, text = mx_session(srv, "", [srs.upper().replace("@SRS.EXAMPLE.TEST", "@srs.example.test")],
                            bounce.replace(token, token2))
    assert code == 250, (code, text)
    srv.wait_for_message(ALICE, token2)


def test_forged_srs_address_refused(env):
    srv = env["srv"]
    good = srs0("alice", "example.test")
    bad_hash = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
    other_secret = srs0("alice", "example.test", secret="not-our-secret-0123456789")
    expired = srs0("alice", "example.test", day=int(time.time()) // 86400 - 40)
    for addr in (bad_hash, other_secret, expired, "SRS0=AAAAAAAA=AA=remote.test=bob@%s" % SRS_DOMAIN,
                 "SRS0=garbage@%s" % SRS_DOMAIN):
        code, text = rcpt_reply(srv, addr)
        assert code == 550 and text.startswith("5.1.1") and "invalid SRS address" in text, (addr, code, text)
    # the unmodified address is fine (from any client: the hash authorizes the relay back)
    code, text = rcpt_reply(srv, good)
    assert code == 250, (code, text)
    # a valid SRS address of an outside sender whose domain we know nothing about: accepted too
    code, text = rcpt_reply(srv, srs0("carol", "elsewhere.test"))
    assert code == 250, (code, text)


def test_explain_shows_srs_reversal(env):
    srv = env["srv"]
    srs = srs0("alice", "example.test")
    p = srv.cli("explain", "--json", "--from", "", "--to", srs, input=b"Subject: x\r\n\r\nx\r\n")
    rc = json.loads(p.stdout)["recipients"][0]
    assert rc["smtp"]["code"] == 250, rc
    assert [t["address"] for t in rc["plan"]] == [ALICE], rc
    assert any("srs" in line and "reverses to alice@example.test" in line for line in rc.get("route", [])
               + rc.get("trace", [])), rc
    forged = srs[:5] + ("A" if srs[5] != "A" else "B") + srs[6:]
    p = srv.cli("explain", "--json", "--from", "", "--to", forged, input=b"Subject: x\r\n\r\nx\r\n")
    rc = json.loads(p.stdout)["recipients"][0]
    assert rc["smtp"]["code"] == 550 and "invalid SRS address" in rc["smtp"]["text"], rc


def test_local_and_direct_mail_untouched(env):
    """Mail from an outside sender to a local mailbox, and mail our user sends out, are not SRS-rewritten."""
    srv = env["srv"]
    token = unique_token("plain")
    code, _ = mx_session(srv, SENDER, [ALICE], build_message(token, sender=SENDER))
    assert code == 250
    msg = srv.wait_for_message(ALICE, token)
    assert b"ARC-Seal" not in msg
    # an authenticated-less relay through trusted networks is not configured: use an alias of ours
    # whose sender is ours: alice -> fwd@ (forwarded, but the sender is ours: no SRS, no ARC)
    token = unique_token("own")
    code, _ = mx_session(srv, ALICE, [ALIAS], build_message(token, sender=ALICE, to=ALIAS))
    assert code == 250
    m = received(env["other"], token)[0]
    assert mail_from(m) == ALICE, m["sender"]
    assert "ARC-Seal" not in m["data"]
