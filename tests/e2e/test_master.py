"""
The master process: privilege separation, restart of a dead role, SIGHUP reload
(good and bad config), SIGTERM while a client is in DATA.
"""
import os
import signal
import subprocess
import time

import pytest

from conftest import (RawSMTP, build_message, data_payload, finish_server, send_plain, unique_token,
                      wait_until, process_tree)

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def srv(make_server):
    s = make_server("master", smtp_processes=2)
    yield s
    finish_server(s)


def role_pids(srv):
    """{role: [pid, ...]} from the role= field of each process's log lines is not needed:
    the children of the master are identified by their uid and root directory."""
    out = {}
    for pid in process_tree(srv.proc.pid):
        if pid == srv.proc.pid:
            continue
        try:
            with open("/proc/%d/status" % pid) as f:
                uid = next(int(l.split()[1]) for l in f if l.startswith("Uid:"))
            root = os.readlink("/proc/%d/root" % pid)
        except (OSError, StopIteration):
            continue
        out[pid] = (uid, root)
    return out


def uid_of(name):
    import pwd
    return pwd.getpwnam(name).pw_uid


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root")
def test_roles_run_unprivileged_and_smtp_is_chrooted(srv):
    roles = role_pids(srv)
    assert len(roles) >= 5, roles  # lookup, queue, deliver, 2 x smtp
    uids = {uid for uid, _ in roles.values()}
    assert 0 not in uids, "a role kept root: %r" % roles
    assert uids <= {uid_of("mailroute"), uid_of("vmail")}, roles
    chrooted = [pid for pid, (uid, root) in roles.items() if root.endswith("/empty")]
    assert len(chrooted) == 2, "expected the 2 smtp processes chrooted into data_dir/empty: %r" % roles
    # the master stays root (it must be able to restart roles and re-bind listeners)
    with open("/proc/%d/status" % srv.proc.pid) as f:
        assert any(l.startswith("Uid:\t0\t") for l in f)


def test_dead_role_is_restarted(srv):
    """kill -9 one role (every non-smtp child in turn); mail still flows afterwards."""
    victims = [pid for pid, (uid, root) in role_pids(srv).items() if not root.endswith("/empty")]
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "event=role_exited" in srv.stderr_text(), 10, what="master noticing the exits")
    token = unique_token("restart")

    def try_send():
        try:
            code, _ = send_plain(srv.ports["mx"], "a@client.test", [ALICE], build_message(token))
            return code == 250
        except Exception:
            return False
    wait_until(try_send, 30, interval=0.5, what="mail accepted again after the roles were killed")
    srv.wait_for_message(ALICE, token)
    assert srv.proc.poll() is None, "the master died"


def test_reload_applies_new_config(srv):
    # With max_recipients 1 the second RCPT is refused; reload back to the default.
    srv.limits["max_recipients"] = 1
    srv.write_config()
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_until(lambda: "event=reloaded" in srv.stderr_text(), 10, what="reload")

    def second_rcpt_refused():
        try:
            with RawSMTP(srv.ports["mx"], timeout=10) as c:
                c.ehlo()
                assert c.cmd("MAIL FROM:<a@client.test>")[0] == 250
                assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
                return c.cmd("RCPT TO:<bob@example.test>")[0] == 452
        except Exception:
            return False
    wait_until(second_rcpt_refused, 20, interval=0.3, what="the reloaded limit to apply")
    del srv.limits["max_recipients"]
    srv.write_config()
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_until(lambda: srv.stderr_text().count("event=reloaded") >= 2, 10, what="second reload")


def test_reload_with_bad_config_keeps_running(srv):
    good = open(srv.config_path).read()
    with open(srv.config_path, "w") as f:
        f.write(good + "no_such_key: 1\n")
    try:
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_until(lambda: "event=reload_failed" in srv.stderr_text(), 10, what="reload failure to be logged")
        assert "no_such_key" in srv.stderr_text()
        token = unique_token("badreload")
        code, _ = send_plain(srv.ports["mx"], "a@client.test", [ALICE], build_message(token))
        assert code == 250
        srv.wait_for_message(ALICE, token)
    finally:
        with open(srv.config_path, "w") as f:
            f.write(good)


def test_sigterm_during_data_answers_421_and_loses_nothing(make_server):
    s = make_server("sigterm")
    try:
        # One message is acknowledged before the stop; a second one is mid-DATA.
        token_ok = unique_token("before")
        code, _ = send_plain(s.ports["mx"], "a@client.test", [ALICE], build_message(token_ok))
        assert code == 250
        c = RawSMTP(s.ports["mx"], timeout=20)
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
        assert c.cmd("DATA")[0] == 354
        token_mid = unique_token("middata")
        c.send("Subject: %s\r\n\r\npartial body\r\n" % token_mid)
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        code, text = c.reply()
        assert code == 421 and text.startswith("4.3.2"), (code, text)
        s.proc.wait(timeout=15)
        assert s.proc.returncode == 0
        # Restart: the acknowledged message is there, the interrupted one is not.
        s.start()
        s.wait_for_message(ALICE, token_ok)
        s.barrier()
        s.assert_absent(token_mid)
    finally:
        finish_server(s)


def test_reload_keeps_open_sessions_and_accepts_new_ones(srv):
    old = RawSMTP(srv.ports["mx"], timeout=20)
    old.ehlo()
    before = srv.stderr_text().count("event=reloaded")
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_until(lambda: srv.stderr_text().count("event=reloaded") > before, 10, what="reload")
    # New connections are served at once by the new generation...
    for _ in range(4):
        with RawSMTP(srv.ports["mx"], timeout=5) as c:
            assert c.banner[0] == 220
    # ...while the old session, served by a draining process, still completes a message.
    token = unique_token("drain")
    assert old.cmd("MAIL FROM:<a@client.test>")[0] == 250
    assert old.cmd("RCPT TO:<%s>" % ALICE)[0] == 250
    assert old.cmd("DATA")[0] == 354
    old.send(data_payload(build_message(token)))
    code, text = old.reply()
    assert code == 250, (code, text)
    old.cmd("QUIT")
    old.close()
    srv.wait_for_message(ALICE, token)
    wait_until(lambda: "event=drained" in srv.stderr_text(), 10, what="the old smtp process to exit")


def test_second_server_on_the_same_data_dir_is_refused(srv):
    p = subprocess.run([srv.bin, "serve", "-c", srv.config_path], capture_output=True, timeout=30, env=srv.env)
    assert p.returncode != 0
    assert b"another mailroute server runs on this data_dir" in p.stderr, p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="sendmail submits over the queue socket as root")
def test_sendmail_entry_point(srv):
    token = unique_token("sendmail")
    msg = ("To: %s\nBcc: bob@example.test\nSubject: %s\n\nfrom a local program\n.\nstill the body\n"
           % (ALICE, token)).encode()
    p = srv.cli("sendmail", "-t", "-i", "-f", "cron@example.test", input=msg)
    assert p.returncode == 0, p.stderr
    got = srv.wait_for_message(ALICE, token)
    assert b"Return-Path: <cron@example.test>" in got
    assert b"\r\n.\r\nstill the body" in got.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"Bcc:" not in got
    bob = srv.wait_for_message("bob@example.test", token)
    assert b"Bcc:" not in bob
    # misuse: no recipients at all
    p = srv.cli("sendmail", input=b"Subject: x\n\nx\n", check=False)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="sendmail submits over the queue socket as root")
def test_sendmail_bs_speaks_smtp_on_stdin(srv):
    token = unique_token("sendmail-bs")
    dialogue = ("EHLO local\r\nMAIL FROM:<batch@example.test>\r\nRCPT TO:<%s>\r\nDATA\r\n"
                "Subject: %s\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n" % (ALICE, token)).encode()
    p = srv.cli("sendmail", "-bs", input=dialogue)
    out = p.stdout.decode()
    assert out.startswith("220 ") and "250 2.0.0 Ok: queued as" in out and "221 " in out, out
    got = srv.wait_for_message(ALICE, token)
    assert b"Return-Path: <batch@example.test>" in got
