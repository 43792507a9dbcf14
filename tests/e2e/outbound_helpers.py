"""
Helpers for the outbound e2e tests (tests/e2e/test_outbound.py).

  LocalUnbound    a local unbound serving test zones (local-data records plus extra
                 local-zone lines, e.g. always_refuse for a SERVFAIL-like answer)
  Receiver       an in-process asyncio SMTP receiver on 127.0.0.X:PORT recording every
                 connection, command and message; per-message dot reply hook, delay,
                 abrupt kill (listener closed and open connections aborted)
  send_many      many messages over several parallel SMTP connections
  tokens_in      the tokens (Subject values) a receiver accepted

All receivers share one asyncio loop running in a daemon thread of the pytest process.
"""
import asyncio
import collections
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from conftest import RawSMTP, data_payload, build_message

UNBOUND = "/usr/sbin/unbound"


# --------------------------------------------------------------------------
# DNS
# --------------------------------------------------------------------------

def free_udp_tcp_port():
    while True:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()


class LocalUnbound:
    """unbound -d on 127.0.0.1@port; zone "test." static with the given records."""

    def __init__(self, records, zones=(), port=None):
        self.records = list(records)
        self.zones = list(zones)      # extra local-zone values, e.g. '"refused.test." always_refuse'
        self.port = port or free_udp_tcp_port()
        self.dir = tempfile.mkdtemp(prefix="mr-outtests-unbound-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.proc = None

    @property
    def forwarder(self):
        return "127.0.0.1@%d" % self.port

    def write_config(self):
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
            '  local-data: "test. 300 IN SOA ns.test. admin.test. 1 3600 600 86400 30"',
        ]
        for z in self.zones:
            lines.append("  local-zone: %s" % z)
        for r in self.records:
            assert "'" not in r, r
            lines.append("  local-data: '%s'" % r)
        lines += ["remote-control:", "  control-enable: no", ""]
        path = os.path.join(self.dir, "unbound.conf")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return path

    def start(self, timeout=10.0):
        conf = self.write_config()
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        log = ""
        try:
            with open(os.path.join(self.dir, "unbound.log")) as f:
                log = f.read()[-2000:]
        except OSError:
            pass
        self.stop()
        raise RuntimeError("unbound did not start: %s" % log)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class DeadForwarder:
    """A UDP+TCP port bound on 127.0.0.1 that never answers (a forwarder that times out)."""

    def __init__(self):
        self.port = free_udp_tcp_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))

    @property
    def forwarder(self):
        return "127.0.0.1@%d" % self.port

    def close(self):
        self.udp.close()


# --------------------------------------------------------------------------
# SMTP receivers
# --------------------------------------------------------------------------

_loop = None
_loop_lock = threading.Lock()


def event_loop():
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            t = threading.Thread(target=_loop.run_forever, name="receivers", daemon=True)
            t.start()
        return _loop


def run_coro(coro, timeout=30):
    return asyncio.run_coroutine_threadsafe(coro, event_loop()).result(timeout)


SUBJECT_RE = re.compile(r"^Subject: (\S+)", re.MULTILINE | re.IGNORECASE)


class Receiver:
    """
    An SMTP receiver on (host, port). Never offers STARTTLS. Records:
      events    [(kind, detail)] in order: ("connect", n), ("cmd", line), ("message", dict)
      messages  dicts {sender, rcpts, data, token, reply, accepted, conn} for every DATA end
    dot_reply(receiver, msg) -> reply line (default "250 2.0.0 ok"); delay seconds before it.
    rcpt_reply(receiver, rcpt_line) -> reply line or None for 250.
    """

    def __init__(self, host, port, name=None, dot_reply=None, rcpt_reply=None, delay=0.0):
        self.host, self.port = host, port
        self.name = name or host
        self.dot_reply = dot_reply
        self.rcpt_reply = rcpt_reply
        self.delay = delay
        self.lock = threading.Lock()
        self.events = []
        self.messages = []
        self.connections = 0
        self.server = None
        self.writers = set()

    # -- lifecycle (callable from the test thread) ----------------------
    def start(self):
        async def go():
            self.server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        run_coro(go())
        return self

    def stop(self):
        """Close the listener and abort every open connection (like a host that died)."""
        async def go():
            if self.server is not None:
                self.server.close()
                self.server = None
            for w in list(self.writers):
                try:
                    w.transport.abort()
                except Exception:
                    pass
            self.writers.clear()
        run_coro(go())

    kill = stop

    @property
    def running(self):
        return self.server is not None

    # -- queries ---------------------------------------------------------
    def accepted(self):
        with self.lock:
            return [m for m in self.messages if m["accepted"]]

    def accepted_tokens(self):
        return [m["token"] for m in self.accepted()]

    def commands(self):
        with self.lock:
            return [d for k, d in self.events if k == "cmd"]

    def clear(self):
        with self.lock:
            self.events.clear()
            self.messages.clear()

    # -- protocol --------------------------------------------------------
    def _log(self, kind, detail):
        with self.lock:
            self.events.append((kind, detail))

    async def _handle(self, reader, writer):
        self.writers.add(writer)
        with self.lock:
            self.connections += 1
            conn = self.connections
        self._log("connect", conn)
        try:
            await self._session(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    async def _session(self, reader, writer, conn):
        async def send(line):
            writer.write((line + "\r\n").encode())
            await writer.drain()

        await send("220 %s ESMTP test receiver" % self.name)
        sender, rcpts = None, []
        while True:
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._log("cmd", line)
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                caps = ["%s hello" % self.name, "PIPELINING", "8BITMIME", "SIZE 52428800",
                        "ENHANCEDSTATUSCODES"]
                writer.write("".join("250%s%s\r\n" % ("-" if i < len(caps) - 1 else " ", c)
                                     for i, c in enumerate(caps)).encode())
                await writer.drain()
            elif verb == "HELO":
                await send("250 %s" % self.name)
            elif verb == "MAIL":
                sender, rcpts = line[10:], []
                await send("250 2.1.0 ok")
            elif verb == "RCPT":
                rep = self.rcpt_reply(self, line) if self.rcpt_reply else None
                if rep is None:
                    rep = "250 2.1.5 ok"
                if sender is None:
                    rep = "503 5.5.1 need MAIL"
                if rep.startswith("2"):
                    rcpts.append(line[8:])
                await send(rep)
            elif verb == "DATA":
                if not rcpts:
                    await send("554 5.5.1 no valid recipients")
                    continue
                await send("354 go ahead")
                lines = []
                while True:
                    l = await reader.readline()
                    if not l:
                        raise ConnectionError("closed in DATA")
                    if l == b".\r\n":
                        break
                    if l.startswith(b"."):
                        l = l[1:]
                    lines.append(l)
                data = b"".join(lines).decode("utf-8", "replace")
                m = SUBJECT_RE.search(data)
                msg = {"sender": sender, "rcpts": list(rcpts), "data": data, "conn": conn,
                       "token": m.group(1) if m else None, "accepted": False, "reply": None,
                       "client_gone": False}
                rep = self.dot_reply(self, msg) if self.dot_reply else "250 2.0.0 ok"
                msg["reply"] = rep
                if self.delay:
                    await asyncio.sleep(self.delay)
                # record before replying: a message we answer 250 to is counted even if the
                # client dies before reading the reply (that is exactly a duplicate candidate)
                msg["accepted"] = rep.startswith("2")
                # the client went away while we were "committing": its 250 will be lost
                msg["client_gone"] = reader.at_eof() or writer.transport.is_closing()
                with self.lock:
                    self.messages.append(msg)
                    self.events.append(("message", msg))
                await send(rep)
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                await send("250 2.0.0 ok")
            elif verb == "NOOP":
                await send("250 2.0.0 ok")
            elif verb == "QUIT":
                await send("221 2.0.0 bye")
                return
            else:
                await send("502 5.5.2 unknown command")


# --------------------------------------------------------------------------
# sending
# --------------------------------------------------------------------------

def send_many(port, sender, items, connections=8, per_connection=None, ehlo="client.test"):
    """
    items: [(token, rcpt)] sent as one message each over `connections` parallel SMTP
    connections (several transactions per connection). Returns {token: (code, text)} of
    the final replies; raises if any thread failed.
    """
    items = list(items)
    results = {}
    errors = []
    lock = threading.Lock()
    chunks = [items[i::connections] for i in range(connections)]

    def worker(chunk):
        try:
            i = 0
            while i < len(chunk):
                n = per_connection or len(chunk)
                with RawSMTP(port) as c:
                    assert c.banner[0] == 220, c.banner
                    c.ehlo(ehlo)
                    for token, rcpt in chunk[i:i + n]:
                        code, text = c.cmd("MAIL FROM:<%s>" % sender)
                        assert code == 250, (code, text)
                        rcpts = rcpt if isinstance(rcpt, (list, tuple)) else [rcpt]
                        for r in rcpts:
                            code, text = c.cmd("RCPT TO:<%s>" % r)
                            assert code == 250, (r, code, text)
                        code, text = c.cmd("DATA")
                        assert code == 354, (code, text)
                        c.send(data_payload(build_message(token, sender=sender, to=rcpts[0])))
                        res = c.reply()
                        with lock:
                            results[token] = res
                    c.send("QUIT\r\n")
                i += n
        except Exception as e:  # reported below
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(ch,)) for ch in chunks if ch]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    bad = {t: r for t, r in results.items() if r[0] != 250}
    assert not bad, "not accepted: %r" % list(bad.items())[:5]
    return results


def token_counts(receivers):
    """Counter of accepted tokens over all receivers."""
    c = collections.Counter()
    for r in receivers:
        c.update(r.accepted_tokens())
    return c
