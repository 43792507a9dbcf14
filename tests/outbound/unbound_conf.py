#!/usr/bin/python3
"""Generate an unbound config serving test DNS data, and optionally run it (loopback only).

As a module (e2e tests):
    from unbound_conf import TestDNS
    with TestDNS(["example.test. 300 IN MX 10 mx.example.test.",
                  "mx.example.test. 300 IN A 127.0.0.1"]) as dns:
        ... dns.forwarder  -> "127.0.0.1@PORT" for mailroute's dns.forward
As a script:
    unbound_conf.py --port 5353 --dir /tmp/x RECORD...     write /tmp/x/unbound.conf and print its path
    unbound_conf.py --run ... RECORD...                   also run unbound in the foreground
Records are unbound local-data strings in the zone "test." (any other zone too:
unbound makes a transparent local zone for each). The zone "test." is static, so
unknown names are NXDOMAIN with a negative TTL of 30 s.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

UNBOUND = "/usr/sbin/unbound"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory, port, records):
    path = os.path.join(directory, "unbound.conf")
    lines = [
        "server:",
        "  interface: 127.0.0.1@%d" % port,
        "  port: %d" % port,
        "  do-ip6: no",
        "  do-not-query-localhost: no",
        '  chroot: ""',
        '  username: ""',
        '  pidfile: ""',
        '  directory: "%s"' % directory,
        '  logfile: "%s/unbound.log"' % directory,
        "  use-syslog: no",
        "  verbosity: 1",
        "  num-threads: 1",
        "  so-reuseport: no",
        '  module-config: "iterator"',
        "  access-control: 127.0.0.0/8 allow",
        '  local-zone: "test." static',
        '  local-data: "test. 300 IN SOA ns.test. admin.test. 1 3600 600 86400 30"',
    ]
    for r in records:
        if "'" in r:
            raise ValueError("record must not contain a single quote: %r" % r)
        lines.append("  local-data: '%s'" % r)
    lines += ["remote-control:", "  control-enable: no", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


class TestDNS:
    def __init__(self, records, port=None):
        self.records = list(records)
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="mr-unbound-")
        self.proc = None

    @property
    def forwarder(self):
        return "127.0.0.1@%d" % self.port

    def start(self, timeout=5.0):
        conf = write_config(self.dir, self.port, self.records)
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("unbound did not start (see %s/unbound.log)" % self.dir)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--dir")
    p.add_argument("--run", action="store_true")
    p.add_argument("records", nargs="*")
    a = p.parse_args()
    port = a.port or free_port()
    if a.run:
        dns = TestDNS(a.records, port)
        if a.dir:
            dns.dir = a.dir
        dns.start()
        print("READY %s" % dns.forwarder, flush=True)
        try:
            dns.proc.wait()
        except KeyboardInterrupt:
            dns.stop()
        return 0
    d = a.dir or tempfile.mkdtemp(prefix="mr-unbound-")
    print(write_config(d, port, a.records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
