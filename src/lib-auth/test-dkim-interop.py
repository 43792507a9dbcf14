#!/usr/bin/python3
"""test-dkim-interop: messages signed by mailroute verify in dkimpy and messages
signed by dkimpy verify in mailroute, for rsa-sha256 and ed25519-sha256.
Usage: test-dkim-interop.py PATH/TO/dkim-tool"""
import base64
import os
import subprocess
import sys
import tempfile

import dkim
from cryptography.hazmat.primitives import serialization

TOOL = sys.argv[1]
MSG = (b"From: Joe SixPack <joe@football.example.com>\r\n"
       b"To: Suzie Q <suzie@shopping.example.net>\r\n"
       b"Subject: Is dinner ready?\r\n"
       b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
       b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
       b"\r\n"
       b"Hi.\r\n\r\nWe lost the game.   Are you hungry yet?  \r\n\r\nJoe.\r\n\r\n")
DOMAIN, SELECTOR = "football.example.com", "sel"
NAME = f"{SELECTOR}._domainkey.{DOMAIN}"

passed = failed = 0


def check(what, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what} {detail}")


with tempfile.TemporaryDirectory() as tmp:
    for kind in ("rsa", "ed25519"):
        keyfile = os.path.join(tmp, kind + ".pem")
        txt = subprocess.run([TOOL, "keygen", kind, keyfile], check=True,
                             capture_output=True).stdout.decode().strip()

        def dnsfunc(name, timeout=5):
            n = name.decode() if isinstance(name, bytes) else name
            return txt.encode() if n.rstrip(".").lower() == NAME else None

        # ours -> dkimpy
        signed = subprocess.run([TOOL, "sign", keyfile, DOMAIN, SELECTOR], input=MSG,
                                check=True, capture_output=True).stdout
        check(f"{kind}: mailroute-signed verifies in dkimpy", dkim.verify(signed, dnsfunc=dnsfunc))
        check(f"{kind}: tampered mailroute-signed fails in dkimpy",
              not dkim.verify(signed.replace(b"hungry", b"Hungry"), dnsfunc=dnsfunc))

        # dkimpy -> ours
        pem = open(keyfile, "rb").read()
        if kind == "rsa":
            priv = pem
            alg = b"rsa-sha256"
        else:
            k = serialization.load_pem_private_key(pem, password=None)
            raw = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
            priv = base64.b64encode(raw)
            alg = b"ed25519-sha256"
        for canon in ((b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")):
            sig = dkim.sign(MSG, SELECTOR.encode(), DOMAIN.encode(), priv, canonicalize=canon,
                            signature_algorithm=alg,
                            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
            r = subprocess.run([TOOL, "verify", NAME, txt], input=sig + MSG, capture_output=True)
            check(f"{kind} {canon}: dkimpy-signed verifies in mailroute", r.returncode == 0,
                  r.stdout.decode())
            r = subprocess.run([TOOL, "verify", NAME, txt],
                               input=sig + MSG.replace(b"Joe.", b"Jim."), capture_output=True)
            check(f"{kind} {canon}: tampered dkimpy-signed fails in mailroute", r.returncode == 1)

print(f"dkimpy interop: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
