"""Crash safety: kill -9 every mailroute process several times while 20 clients send.

Every message that got a 250 must end up in the Maildir exactly once. A message whose
DATA was never completed (final "." not sent) or that got a non-250 final reply must
never be delivered. A message whose final "." was sent but whose reply was lost to the
kill MAY be delivered (RFC 1047): those are counted and reported, not asserted.

Env: CRASH_MESSAGES (default 2000), CRASH_CLIENTS (20), CRASH_KILLS (4),
CRASH_SEND_BUDGET seconds (90): stop starting new messages after that.
"""
import os
import random
import re
import socket
import threading
import time
import uuid

import pytest

from conftest import SUMMARY_LINES, RawSMTP, ConnectionClosed, finish_server, wait_until

N = int(os.environ.get("CRASH_MESSAGES", "2000"))
CLIENTS = int(os.environ.get("CRASH_CLIENTS", "20"))
KILLS = int(os.environ.get("CRASH_KILLS", "4"))
SEND_BUDGET = float(os.environ.get("CRASH_SEND_BUDGET", "90"))
ALICE = "alice@example.test"

UNSENT, INCOMPLETE, DOT_SENT, ACCEPTED, REFUSED = "unsent", "incomplete", "dot_sent", "accepted", "refused"


@pytest.fixture(scope="module")
def crash_server(make_server):
    srv = make_server("crash", smtp_processes=2, limits={
        "command_timeout": 60, "data_timeout": 60,
        "max_connections_per_ip": 200, "max_connections": 1000,
    }, extra_config="queue:\n  retry_min: 1\n  retry_max: 2\n")
    yield srv
    finish_server(srv)


class Run:
    def __init__(self, n):
        self.run_id = uuid.uuid4().hex[:8]
        self.state = [UNSENT] * n
        self.next = 0
        self.lock = threading.Lock()
        self.accepted = 0
        self.stop_sending = False
        self.errors = []

    def take(self):
        with self.lock:
            if self.next >= len(self.state) or self.stop_sending:
                return None
            i = self.next
            self.next += 1
            return i

    def set(self, i, st):
        with self.lock:
            self.state[i] = st
            if st == ACCEPTED:
                self.accepted += 1


def message(run, i):
    token = "CRASH-%s-%06d" % (run.run_id, i)
    body = "".join("line %d of message %s\r\n" % (k, token) for k in range(20))
    return ("From: <load@client.test>\r\nTo: <alice@example.test>\r\nSubject: %s\r\n"
            "Message-ID: <%s@client.test>\r\n\r\n%s" % (token, token, body)).encode()


def connect(port, deadline):
    delay = 0.05
    while time.monotonic() < deadline:
        try:
            c = RawSMTP(port, timeout=30)
            if c.banner[0] != 220:
                c.close()
                raise ConnectionClosed("banner %r" % (c.banner,))
            c.ehlo()
            return c
        except (OSError, ConnectionClosed, AssertionError):
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    return None


def worker(run, port, deadline):
    c = None
    rnd = random.Random()
    while True:
        if c is None:
            c = connect(port, deadline)
            if c is None:
                return
        i = run.take()
        if i is None:
            break
        run.set(i, INCOMPLETE)
        try:
            code, _ = c.cmd("MAIL FROM:<load@client.test>")
            if code != 250:
                run.set(i, REFUSED)
                c.cmd("RSET")
                continue
            code, _ = c.cmd("RCPT TO:<%s>" % ALICE)
            if code != 250:
                run.set(i, REFUSED)
                c.cmd("RSET")
                continue
            code, _ = c.cmd("DATA")
            if code != 354:
                run.set(i, REFUSED)
                c.cmd("RSET")
                continue
            body = message(run, i)
            if rnd.random() < 0.2:
                # linger mid-DATA so that kills land inside DATA too
                c.send(body[: len(body) // 2])
                time.sleep(0.02)
                c.send(body[len(body) // 2:])
            else:
                c.send(body)
            c.send(b".\r\n")
            run.set(i, DOT_SENT)
            code, _ = c.reply()
            run.set(i, ACCEPTED if code == 250 else REFUSED)
        except (OSError, ConnectionClosed, AssertionError):
            c.close()
            c = None
    if c is not None:
        try:
            c.cmd("QUIT")
        except (OSError, ConnectionClosed, AssertionError):
            pass
        c.close()


def killer(run, srv, kills, log):
    try:
        for k in range(kills):
            target = (k + 1) * N // (kills + 1)
            t0 = time.monotonic()
            while run.accepted < target and not run.stop_sending and time.monotonic() - t0 < 60:
                time.sleep(0.02)
            if run.stop_sending:
                break
            time.sleep(random.random() * 0.2)
            n = srv.kill9()
            t1 = time.monotonic()
            srv.start()
            log.append((n, time.monotonic() - t1))
    except BaseException as e:  # pytest.fail inside start() raises a BaseException subclass
        run.errors.append("killer: %r" % (e,))
        run.stop_sending = True


TOKEN_RE = re.compile(rb"^Subject: CRASH-([0-9a-f]{8})-(\d{6})\r?$", re.M)


def delivered_counts(srv, run):
    counts = {}
    for _path, data in srv.messages(ALICE):
        head = data.split(b"\r\n\r\n", 1)[0]
        m = TOKEN_RE.search(head)
        if m and m.group(1).decode() == run.run_id:
            i = int(m.group(2))
            counts[i] = counts.get(i, 0) + 1
    return counts


def queue_is_empty(srv):
    p = srv.cli("queue", "list", check=False)
    if p.returncode != 0:
        return None
    return b"@" not in p.stdout


def test_kill9_during_load(crash_server):
    srv = crash_server
    run = Run(N)
    started = time.monotonic()
    deadline = started + SEND_BUDGET
    kill_log = []
    threads = [threading.Thread(target=worker, args=(run, srv.ports["mx"], deadline + 30), daemon=True)
               for _ in range(CLIENTS)]
    kt = threading.Thread(target=killer, args=(run, srv, KILLS, kill_log), daemon=True)
    for t in threads:
        t.start()
    kt.start()
    while any(t.is_alive() for t in threads):
        if time.monotonic() > deadline:
            run.stop_sending = True
        time.sleep(0.1)
        if run.errors:
            run.stop_sending = True
    run.stop_sending = True
    kt.join(60)
    for t in threads:
        t.join(5)
    send_time = time.monotonic() - started
    assert not run.errors, run.errors
    if srv.proc is None or srv.proc.poll() is not None or not srv.pids():
        srv.start()

    accepted = {i for i, s in enumerate(run.state) if s == ACCEPTED}
    must_be_absent = {i for i, s in enumerate(run.state) if s in (INCOMPLETE, REFUSED)}
    ambiguous = {i for i, s in enumerate(run.state) if s == DOT_SENT}

    # every accepted message arrives (the queue recovers after each crash)
    try:
        wait_until(lambda: accepted <= set(delivered_counts(srv, run)), 60, interval=0.5,
                   what="delivery of all %d accepted messages" % len(accepted))
    except AssertionError:
        pass  # reported below with the exact numbers
    # then let the queue drain so that late wrong deliveries would show
    qstate = None
    try:
        qstate = wait_until(lambda: queue_is_empty(srv) is not False, 30, interval=0.5, what="empty queue")
    except AssertionError:
        qstate = False
    if qstate is None:  # `queue list` unavailable: fall back to a barrier message
        srv.barrier()
    counts = delivered_counts(srv, run)

    missing = sorted(accepted - set(counts))
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    wrongly = sorted(i for i in must_be_absent if i in counts)
    amb_delivered = sum(1 for i in ambiguous if i in counts)
    unsent = sum(1 for s in run.state if s == UNSENT)
    summary = ("crash test: %d messages, %d clients, %d kills (%s), %.0fs sending: accepted %d, "
               "refused %d, incomplete DATA %d, final-dot-sent-no-reply %d (delivered %d), never started %d; "
               "MISSING %d, DUPLICATES %d, WRONGLY DELIVERED %d%s" % (
                   N, CLIENTS, len(kill_log),
                   ", ".join("%d procs/%.1fs restart" % k for k in kill_log), send_time,
                   len(accepted), sum(1 for s in run.state if s == REFUSED),
                   sum(1 for s in run.state if s == INCOMPLETE), len(ambiguous), amb_delivered, unsent,
                   len(missing), duplicates, len(wrongly),
                   "" if qstate is not False else "; queue did not drain in 30s"))
    SUMMARY_LINES.append(summary)
    print(summary)

    assert len(kill_log) >= min(KILLS, 2), "the server was killed only %d times: %s" % (len(kill_log), summary)
    assert len(accepted) >= N // 4, "too few messages accepted to mean anything: " + summary
    assert not missing, "accepted but never delivered (first: %s): %s" % (missing[:10], summary)
    assert duplicates == 0, "duplicated deliveries: " + summary
    assert not wrongly, "delivered without a completed DATA/250 (first: %s): %s" % (
        [(i, run.state[i]) for i in wrongly[:10]], summary)
