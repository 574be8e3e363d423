"""Smoke test of a network benchmark server (suite 'bench'): starts it on a free loopback
port, talks to it briefly, stops it by its PID with SIGTERM and expects a clean exit.

    net_smoke.py echo SERVER [ARGS...]   # a few echoes on two connections, one of them
                                         # interleaved (ARGS go to the server after its port)
    net_smoke.py http SERVER   # GET / twice on one keep-alive connection: 200 and the body,
                               # then HEAD / and GET / on it: no body after HEAD's headers

The server is started with port 0 and prints the port it got; everything is bounded by
timeouts, so a hung server fails the test instead of stalling CI.
"""

import http.client
import signal
import socket
import subprocess
import sys


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def echo_check(port):
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    for i in range(20):
        for k, c in enumerate(conns):
            msg = f"ping {k} {i} ".encode() * (1 + i)
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = c.recv(65536)
                if not chunk:
                    fail("connection closed by the server")
                got += chunk
            if got != msg:
                fail(f"echo mismatch: sent {msg[:40]!r}, got {got[:40]!r}")
    # A message larger than any read buffer comes back whole.
    big = bytes(range(256)) * 1024
    conns[0].sendall(big)
    got = b""
    while len(got) < len(big):
        chunk = conns[0].recv(65536)
        if not chunk:
            fail("connection closed during the large echo")
        got += chunk
    if got != big:
        fail("large echo mismatch")
    # A half-closed connection ends its session: the server closes its side too.
    conns[1].shutdown(socket.SHUT_WR)
    if conns[1].recv(1) != b"":
        fail("no end of stream after a half-close")
    for c in conns:
        c.close()
    print("echo ok")


def http_check(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(2):
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or body != b"Hello, World!":
            fail(f"GET / answered {r.status} {body[:60]!r}")
        if r.getheader("Content-Type") != "text/plain":
            fail(f"Content-Type {r.getheader('Content-Type')!r}")
    c.close()
    # HEAD: the headers of GET, Content-Length included, and no body (RFC 9110 §9.3.2). Raw
    # bytes, since a body sent anyway would be taken by http.client for the next response.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    head, sep, rest = got.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 200"):
        fail(f"HEAD / answered {got[:80]!r}")
    if b"\r\ncontent-length: 13" not in head.lower():
        fail(f"HEAD / without the Content-Length of GET: {head!r}")
    if not rest.startswith(b"HTTP/1.1 200") or rest.count(b"Hello, World!") != 1:
        fail(f"after HEAD's headers {rest[:80]!r}, expected the GET response alone")
    print("http ok")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("echo", "http"):
        fail("usage: net_smoke.py echo|http SERVER [ARGS...]")
    kind, server = sys.argv[1], sys.argv[2]
    proc = subprocess.Popen([server, "0"] + sys.argv[3:], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        prefix = "listening on 127.0.0.1:"
        if not line.startswith(prefix):
            fail(f"first line {line!r}, expected '{prefix}PORT'")
        port = int(line[len(prefix):])
        (echo_check if kind == "echo" else http_check)(port)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        if rc != 0:
            fail(f"exit status {rc} after SIGTERM")
        print("stopped cleanly")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
