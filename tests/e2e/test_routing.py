"""
The routing engine end to end: aliases and teams, loops, regex aliases, catch-all,
subaddressing, system rules, users' Sieve scripts (fileinto, discard, redirect,
vacation), and `mailroute explain` agreeing with what live delivery did.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import build_message, finish_server, send_plain, unique_token, wait_until, RawSMTP

D = "example.test"
AGENTS = ["agent1@%s" % D, "agent2@%s" % D, "agent3@%s" % D]
RULES = r'''
require ["vnd.mailroute", "fileinto", "envelope"];
if header :contains "subject" "[billing]" { fileinto "Billing"; tag "X-Routed" "billing"; }
if header :contains "subject" "[blocked]" { reject_code "550" "5.7.1" "blocked by the routing rules"; stop; }
'''
USER_SCRIPT = r'''
require ["fileinto", "vacation", "envelope", "subaddress", "variables", "mailbox"];
if envelope :detail :matches "to" "*" { if string :is "${1}" "" {} else { fileinto :create "${1}"; stop; } }
if header :contains "subject" "file-me" { fileinto :create "Filed"; stop; }
if header :contains "subject" "drop-me" { discard; stop; }
if header :contains "subject" "bounce-me" { redirect "bob@example.test"; stop; }
vacation :days 7 :subject "Away" "I am away until Monday.";
'''


@pytest.fixture(scope="module")
def rt(make_server):
    s = make_server("routing", start=False)
    rules = os.path.join(s.root, "rules.sieve")
    with open(rules, "w") as f:
        f.write(RULES)
    os.chmod(rules, 0o644)
    s.extra_config = "rules: \"%s\"\n" % rules
    s.write_config()
    for a in AGENTS + ["carol@%s" % D]:
        s.cli("user", "add", a, input=b"pw-agents-1\n")
    # support@ -> a team of three; agent1 is also in a nested group reached twice.
    s.cli("alias", "add", "team-a@%s" % D, AGENTS[0], AGENTS[1])
    s.cli("alias", "add", "team-b@%s" % D, AGENTS[0], AGENTS[2])
    s.cli("alias", "add", "support@%s" % D, "team-a@%s" % D, "team-b@%s" % D, AGENTS[0])
    # a loop
    s.cli("alias", "add", "loop1@%s" % D, "loop2@%s" % D)
    s.cli("alias", "add", "loop2@%s" % D, "loop1@%s" % D)
    # regex with captures: <name>-sales@ -> agent<name>@
    s.cli("alias", "add", "--regex", r"^(agent[0-9])-sales@example\.test$", "$1@%s" % D)
    script = os.path.join(s.root, "user.sieve")
    with open(script, "w") as f:
        f.write(USER_SCRIPT)
    s.cli("sieve", "put", "carol@%s" % D, "main", script)
    s.cli("sieve", "activate", "carol@%s" % D, "main")
    s.start()
    yield s
    finish_server(s)


def folder_messages(srv, address, folder):
    root = srv.maildir(address)
    d = os.path.join(root, "." + folder if folder else "", "new")
    try:
        return [open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))]
    except OSError:
        return []


def wait_in_folder(srv, address, folder, token, timeout=30):
    t = token.encode()
    found = wait_until(lambda: [m for m in folder_messages(srv, address, folder) if t in m], timeout,
                       what="%s in %s/%s" % (token, address, folder or "INBOX"))
    assert len(found) == 1, "%d copies" % len(found)
    return found[0]


def explain(srv, sender, rcpts, message):
    args = ["explain", "--json", "--from", sender]
    for r in rcpts:
        args += ["--to", r]
    p = srv.cli(*args, input=message.encode() if isinstance(message, str) else message)
    return json.loads(p.stdout)


def test_team_gets_one_copy_each(rt):
    token = unique_token("team")
    msg = build_message(token, to="support@%s" % D)
    code, _ = send_plain(rt.ports["mx"], "customer@client.test", ["support@%s" % D], msg)
    assert code == 250
    for a in AGENTS:
        rt.wait_for_message(a, token)
    time.sleep(1)
    for a in AGENTS:
        assert len(rt.find(a, token)) == 1, "%s got %d copies" % (a, len(rt.find(a, token)))
    plan = explain(rt, "customer@client.test", ["support@%s" % D], msg)["recipients"][0]["plan"]
    assert sorted(p["address"] for p in plan) == sorted(AGENTS)


def test_alias_loop_is_refused(rt):
    with RawSMTP(rt.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@client.test>")[0] == 250
        code, text = c.cmd("RCPT TO:<loop1@%s>" % D)
        assert code == 550 and text.startswith("5.4.6"), (code, text)
    ex = explain(rt, "x@client.test", ["loop1@%s" % D], "Subject: x\r\n\r\nx\r\n")["recipients"][0]
    assert ex["smtp"]["code"] == 550 and ex["smtp"]["enhanced"] == "5.4.6"


def test_regex_alias_with_capture(rt):
    token = unique_token("regex")
    code, _ = send_plain(rt.ports["mx"], "x@client.test", ["agent2-sales@%s" % D],
                         build_message(token, to="agent2-sales@%s" % D))
    assert code == 250
    rt.wait_for_message(AGENTS[1], token)
    plan = explain(rt, "x@client.test", ["agent2-sales@%s" % D], "Subject: x\r\n\r\nx\r\n")["recipients"][0]["plan"]
    assert [p["address"] for p in plan] == [AGENTS[1]]


def test_catch_all(make_server):
    s = make_server("catchall")
    try:
        with RawSMTP(s.ports["mx"]) as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<x@client.test>")[0] == 250
            assert c.cmd("RCPT TO:<nobody-here@%s>" % D)[0] == 550
        s.cli("alias", "add", "@%s" % D, "bob@%s" % D)
        token = unique_token("catchall")
        code, _ = send_plain(s.ports["mx"], "x@client.test", ["nobody-here@%s" % D], build_message(token))
        assert code == 250
        s.wait_for_message("bob@%s" % D, token)
    finally:
        finish_server(s)


def test_subaddress_into_folder_by_user_script(rt):
    token = unique_token("plus")
    rcpt = "carol+news@%s" % D
    msg = build_message(token, to=rcpt)
    code, _ = send_plain(rt.ports["mx"], "bob@%s" % D, [rcpt], msg)
    assert code == 250
    wait_in_folder(rt, "carol@%s" % D, "news", token)
    plan = explain(rt, "bob@%s" % D, [rcpt], msg)["recipients"][0]["plan"][0]
    assert any(a.startswith("fileinto") and '"news"' in a for a in plan["user_rules"]["actions"]), plan["user_rules"]


def test_system_rule_routes_by_subject(rt):
    token = unique_token("billing")
    msg = build_message(token, to=AGENTS[2]).replace("Subject: ", "Subject: [billing] ", 1)
    code, _ = send_plain(rt.ports["mx"], "x@client.test", [AGENTS[2]], msg)
    assert code == 250
    got = wait_in_folder(rt, AGENTS[2], "Billing", token)
    assert b"X-Routed: billing" in got
    plan = explain(rt, "x@client.test", [AGENTS[2]], msg)["recipients"][0]["plan"]
    assert plan[0]["folder"] == "Billing"


def test_system_rule_rejects_with_its_code(rt):
    token = unique_token("blocked")
    msg = build_message(token, to=AGENTS[0]).replace("Subject: ", "Subject: [blocked] ", 1)
    with RawSMTP(rt.ports["mx"]) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<x@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % AGENTS[0])[0] == 250
        assert c.cmd("DATA")[0] == 354
        from conftest import data_payload
        c.send(data_payload(msg))
        code, text = c.reply()
        assert code == 550 and "blocked by the routing rules" in text, (code, text)
    ex = explain(rt, "x@client.test", [AGENTS[0]], msg)["recipients"][0]
    assert ex["refused"]["code"] == 550


def test_user_fileinto_discard_redirect(rt):
    carol = "carol@%s" % D
    t1, t2, t3 = unique_token("file"), unique_token("drop"), unique_token("redir")
    for token, subj in ((t1, "file-me"), (t2, "drop-me"), (t3, "bounce-me")):
        msg = build_message(token, to=carol).replace("Subject: ", "Subject: %s " % subj, 1)
        # a List-Id keeps the vacation rule quiet for these
        msg = msg.replace("\r\n\r\n", "\r\nList-Id: <tests.example.test>\r\n\r\n", 1)
        code, _ = send_plain(rt.ports["mx"], "bob@%s" % D, [carol], msg)
        assert code == 250
    wait_in_folder(rt, carol, "Filed", t1)
    rt.wait_for_message("bob@%s" % D, t3)
    rt.barrier(carol)
    assert not rt.find(carol, t2) and not folder_messages(rt, carol, "Filed").count(t2)
    assert not rt.find(carol, t3), "redirect must not keep a copy"


def vacation_replies(srv, to):
    return [m for m in (x for _, x in srv.messages(to)) if b"Subject: Away" in m]


def test_vacation_once_per_sender_and_never_to_lists_bulk_or_null(rt):
    carol = "carol@%s" % D
    sender = AGENTS[1]
    before = len(vacation_replies(rt, sender))
    for i in range(2):
        token = unique_token("vac%d" % i)
        code, _ = send_plain(rt.ports["mx"], sender, [carol], build_message(token, sender=sender, to=carol))
        assert code == 250
        rt.wait_for_message(carol, token)
    wait_until(lambda: len(vacation_replies(rt, sender)) > before, 30, what="a vacation reply")
    # list, bulk and null-sender messages get none
    quiet = AGENTS[2]
    before_quiet = len(vacation_replies(rt, quiet))
    for extra in ("List-Id: <l.example.test>\r\n", "Precedence: bulk\r\n"):
        token = unique_token("quiet")
        msg = build_message(token, sender=quiet, to=carol).replace("\r\n\r\n", "\r\n" + extra + "\r\n", 1)
        code, _ = send_plain(rt.ports["mx"], quiet, [carol], msg)
        assert code == 250
        rt.wait_for_message(carol, token)
    token = unique_token("nullsender")
    code, _ = send_plain(rt.ports["mx"], "", [carol], build_message(token, sender=quiet, to=carol))
    assert code == 250
    rt.wait_for_message(carol, token)
    rt.barrier(sender)
    rt.barrier(quiet)
    assert len(vacation_replies(rt, sender)) == before + 1, "exactly one reply per sender per period"
    assert len(vacation_replies(rt, quiet)) == before_quiet, "no reply to lists, bulk or the null sender"


def test_redirect_loop_between_two_users_stops(rt):
    a, b = "loopa@%s" % D, "loopb@%s" % D
    for user, other in ((a, b), (b, a)):
        rt.cli("user", "add", user, input=b"pw-loop-1\n")
        script = os.path.join(rt.root, "%s.sieve" % user.split("@")[0])
        with open(script, "w") as f:
            f.write('redirect "%s";\n' % other)
        rt.cli("sieve", "put", user, "fwd", script)
        rt.cli("sieve", "activate", user, "fwd")
    token = unique_token("loop")
    code, _ = send_plain(rt.ports["mx"], "x@client.test", [a], build_message(token, to=a))
    assert code == 250
    # a -> b -> a: the second time a's rules see their own Delivered-To and keep the message.
    rt.wait_for_message(a, token)
    time.sleep(2)
    assert len(rt.find(a, token)) == 1 and len(rt.find(b, token)) == 0
    assert "event=sieve_loop" in rt.stderr_text()
    injected = rt.stderr_text().count("event=injected")
    time.sleep(2)
    assert rt.stderr_text().count("event=injected") == injected, "messages keep being made: a loop"
