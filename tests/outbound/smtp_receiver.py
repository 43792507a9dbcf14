#!/usr/bin/python3
"""A tiny scriptable SMTP receiver for the outbound client tests (loopback only).

Prints "READY <port>" on stdout once listening. Every event is appended as one
JSON object per line to --log: {"event": "connect"}, {"event": "cmd", "line": ...},
{"event": "tls"}, {"event": "message", "from": ..., "rcpts": [...], "data": ..., "tls": bool}.
Misbehaviours on demand: error replies at any step, stalling, bare-LF replies,
an endless multiline EHLO reply, no STARTTLS. Stop it with SIGTERM.
"""
import argparse
import asyncio
import json
import signal
import ssl
import sys


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--starttls-garbage", action="store_true", help="answer 220 to STARTTLS, then junk and close")
    p.add_argument("--banner", default="220 receiver.test ESMTP ready")
    p.add_argument("--ehlo-reply", help="reply to EHLO instead of the capability list, e.g. '502 no'")
    p.add_argument("--mail-reply", default="250 2.1.0 ok")
    p.add_argument("--rcpt-reply", action="append", default=[], help="ADDR=REPLY, e.g. 'b@x=550 5.1.1 no'")
    p.add_argument("--data-reply", default="354 go ahead")
    p.add_argument("--dot-reply", default="250 2.0.0 queued as 42")
    p.add_argument("--stall", choices=["banner", "ehlo", "mail", "rcpt", "data", "dot"])
    p.add_argument("--bare-lf", action="store_true")
    p.add_argument("--endless-multiline", action="store_true")
    p.add_argument("--size", type=int, default=10485760)
    p.add_argument("--no-pipelining", action="store_true")
    p.add_argument("--no-8bitmime", action="store_true")
    p.add_argument("--smtputf8", action="store_true")
    p.add_argument("--dsn", action="store_true")
    p.add_argument("--chunking", action="store_true")
    p.add_argument("--raw", action="append", default=[],
                   help="[#K[!]:]STEP=BYTES: at banner|ehlo|mail|rcpt|data|dot send BYTES (Python escapes) "
                        "instead of the reply; #K: only on the K-th connection (from 0); !: then close")
    p.add_argument("--close-after-raw", action="store_true")
    p.add_argument("--auth", help="USER:PASS accepted with AUTH PLAIN/LOGIN (offered only inside TLS)")
    return p.parse_args()


ARGS = parse_args()
LOG = open(ARGS.log, "a", buffering=1)


def log(**kw):
    LOG.write(json.dumps(kw) + "\n")


class Session:
    count = 0

    def __init__(self, reader, writer, tls_ctx):
        self.r, self.w, self.tls_ctx = reader, writer, tls_ctx
        self.index = Session.count
        Session.count += 1
        self.tls = False
        self.eol = "\n" if ARGS.bare_lf else "\r\n"
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpts = []
        self.bdat = []

    async def send(self, text):
        self.w.write((text + self.eol).encode())
        await self.w.drain()

    async def stall(self):
        await asyncio.sleep(3600)

    def caps(self):
        c = ["receiver.test hello", "SIZE %d" % ARGS.size, "ENHANCEDSTATUSCODES"]
        if not ARGS.no_pipelining:
            c.append("PIPELINING")
        if not ARGS.no_8bitmime:
            c.append("8BITMIME")
        if ARGS.smtputf8:
            c.append("SMTPUTF8")
        if ARGS.dsn:
            c.append("DSN")
        if ARGS.chunking:
            c.append("CHUNKING")
        if self.tls_ctx and not ARGS.no_starttls and not self.tls:
            c.append("STARTTLS")
        if ARGS.auth and self.tls:
            c.append("AUTH PLAIN LOGIN")
        return c

    async def reply_multi(self, code, lines):
        for i, l in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self.w.write(("%d%s%s%s" % (code, sep, l, self.eol)).encode())
        await self.w.drain()

    async def readline(self):
        line = await self.r.readline()
        if not line:
            raise ConnectionError("closed")
        return line.decode("utf-8", "replace").rstrip("\r\n")

    async def raw(self, step):
        for spec in ARGS.raw:
            close = ARGS.close_after_raw
            if spec.startswith("#"):
                conn, spec = spec[1:].split(":", 1)
                if conn.endswith("!"):
                    close, conn = True, conn[:-1]
                if int(conn) != self.index:
                    continue
            st, data = spec.split("=", 1)
            if st == step:
                self.w.write(data.encode("latin-1").decode("unicode_escape").encode("latin-1"))
                await self.w.drain()
                log(event="raw", step=step)
                if close:
                    raise ConnectionError("closing after raw")
                return True
        return False

    async def run(self):
        log(event="connect")
        if ARGS.stall == "banner":
            await self.stall()
        if await self.raw("banner"):
            while True:
                await self.readline()
        await self.send(ARGS.banner)
        if not ARGS.banner.startswith("2"):
            await self.readline()
            return
        while True:
            line = await self.readline()
            log(event="cmd", line=line, tls=self.tls)
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            step = {"EHLO": "ehlo", "MAIL": "mail", "RCPT": "rcpt", "DATA": "data"}.get(verb)
            if step and await self.raw(step):
                continue
            if verb == "EHLO":
                if ARGS.stall == "ehlo":
                    await self.stall()
                if ARGS.endless_multiline:
                    while True:
                        self.w.write(b"250-endless\r\n")
                        await self.w.drain()
                if ARGS.ehlo_reply:
                    await self.send(ARGS.ehlo_reply)
                else:
                    await self.reply_multi(250, self.caps())
            elif verb == "HELO":
                await self.send("250 receiver.test")
            elif verb == "STARTTLS" and self.tls_ctx and not self.tls and not ARGS.no_starttls:
                await self.send("220 2.0.0 go ahead")
                if ARGS.starttls_garbage:
                    self.w.write(b"this is not a TLS server hello\r\n")
                    await self.w.drain()
                    log(event="tls-garbage")
                    return
                await self.w.start_tls(self.tls_ctx)
                self.tls = True
                self.reset()
                log(event="tls")
            elif verb == "AUTH" and ARGS.auth and self.tls:
                await self.auth(arg)
            elif verb == "MAIL":
                if ARGS.stall == "mail":
                    await self.stall()
                if ARGS.mail_reply.startswith("2"):
                    self.mail_from = arg
                await self.send(ARGS.mail_reply)
            elif verb == "RCPT":
                if ARGS.stall == "rcpt":
                    await self.stall()
                rep = "250 2.1.5 ok"
                for spec in ARGS.rcpt_reply:
                    addr, r = spec.split("=", 1)
                    if ("<%s>" % addr).lower() in arg.lower():
                        rep = r
                if self.mail_from is None:
                    rep = "503 5.5.1 need MAIL"
                if rep.startswith("2"):
                    self.rcpts.append(arg)
                await self.send(rep)
            elif verb == "DATA":
                if ARGS.stall == "data":
                    await self.stall()
                if not self.rcpts:
                    await self.send("554 5.5.1 no valid recipients")
                    continue
                await self.send(ARGS.data_reply)
                if not ARGS.data_reply.startswith("354"):
                    continue
                data = []
                while True:
                    l = await self.r.readline()
                    if not l:
                        raise ConnectionError("closed in DATA")
                    if l == b".\r\n":
                        break
                    data.append(l.decode("utf-8", "replace"))
                log(event="message", sender=self.mail_from, rcpts=self.rcpts, data="".join(data),
                    tls=self.tls)
                if ARGS.stall == "dot":
                    await self.stall()
                if await self.raw("dot"):
                    continue
                await self.send(ARGS.dot_reply)
                self.reset()
            elif verb == "BDAT" and ARGS.chunking:
                parts = arg.split()
                n = int(parts[0])
                last = len(parts) > 1 and parts[1].upper() == "LAST"
                chunk = await self.r.readexactly(n)
                self.bdat.append(chunk.decode("utf-8", "replace"))
                if not self.rcpts:
                    await self.send("554 5.5.1 no valid recipients")
                    continue
                if not last:
                    await self.send("250 2.0.0 %d octets received" % n)
                    continue
                log(event="message", sender=self.mail_from, rcpts=self.rcpts, data="".join(self.bdat),
                    tls=self.tls, bdat=len(self.bdat))
                if ARGS.stall == "dot":
                    await self.stall()
                await self.send(ARGS.dot_reply)
                self.reset()
            elif verb == "RSET":
                self.reset()
                await self.send("250 2.0.0 ok")
            elif verb == "NOOP":
                await self.send("250 2.0.0 ok")
            elif verb == "QUIT":
                await self.send("221 2.0.0 bye")
                return
            else:
                await self.send("502 5.5.2 unknown command")

    async def auth(self, arg):
        import base64
        user, pw = ARGS.auth.split(":", 1)
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        ok = False
        if mech == "PLAIN" and len(parts) == 2:
            raw = base64.b64decode(parts[1])
            ok = raw == b"\0" + user.encode() + b"\0" + pw.encode()
        elif mech == "LOGIN":
            await self.send("334 VXNlcm5hbWU6")
            u = base64.b64decode(await self.readline())
            await self.send("334 UGFzc3dvcmQ6")
            p = base64.b64decode(await self.readline())
            ok = u == user.encode() and p == pw.encode()
        log(event="auth", ok=ok)
        await self.send("235 2.7.0 ok" if ok else "535 5.7.8 bad credentials")


async def main():
    tls_ctx = None
    if ARGS.tls_cert:
        tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_ctx.load_cert_chain(ARGS.tls_cert, ARGS.tls_key)

    async def handle(reader, writer):
        try:
            await Session(reader, writer, tls_ctx).run()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    server = await asyncio.start_server(handle, ARGS.host, ARGS.port, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
