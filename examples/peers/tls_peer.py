#!/usr/bin/env python3
"""A TLS peer in Python's standard library only (`ssl`), for the TLS interop tests.

Frames are protobuf-delimited (a varint length, then the payload), mutual TLS both ways:

  tls_peer.py client PORT CA CERT KEY N   dial 127.0.0.1:PORT (name "localhost"), send N
                                          messages, read N replies (each message reversed)
  tls_peer.py server CA CERT KEY N        print "listening PORT", accept one connection
                                          (a client certificate is required), read N
                                          messages, reply to each reversed

Message i is `len = (i * 7919) % 5000` bytes, byte k being `(i + k) % 256`. The last line
is "ok N peer=<the other side's common name>" or "error <why>" (exit status 1).
"""
import socket
import ssl
import sys


def message(i):
    n = (i * 7919) % 5000
    return bytes((i + k) % 256 for k in range(n))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Frames:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the peer closed the connection")
        self.buf += chunk

    def read(self):
        while True:
            n, shift, at = 0, 0, 0
            while at < len(self.buf):
                b = self.buf[at]
                n |= (b & 0x7F) << shift
                shift += 7
                at += 1
                if not b & 0x80:
                    break
            else:
                self._fill()
                continue
            if len(self.buf) - at >= n:
                payload = self.buf[at:at + n]
                self.buf = self.buf[at + n:]
                return payload
            self._fill()


def common_name(sock):
    cert = sock.getpeercert()
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return "?"


def exchange_as_client(sock, n):
    frames = Frames(sock)
    batch = bytearray()
    for i in range(n):
        m = message(i)
        batch += varint(len(m)) + m
        if len(batch) > 32768:
            sock.sendall(batch)
            batch = bytearray()
    sock.sendall(batch)
    for i in range(n):
        got = frames.read()
        if got != message(i)[::-1]:
            raise ValueError(f"reply {i} is wrong ({len(got)} bytes)")


def exchange_as_server(sock, n):
    frames = Frames(sock)
    for i in range(n):
        got = frames.read()
        if got != message(i):
            raise ValueError(f"message {i} is wrong ({len(got)} bytes)")
        sock.sendall(varint(len(got)) + got[::-1])


def main():
    mode = sys.argv[1]
    if mode == "client":
        port, ca, cert, key, n = sys.argv[2:7]
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        ctx.load_cert_chain(cert, key)
        raw = socket.create_connection(("127.0.0.1", int(port)), timeout=60)
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            exchange_as_client(sock, int(n))
            print(f"ok {n} peer={common_name(sock)}", flush=True)
    elif mode == "server":
        ca, cert, key, n = sys.argv[2:6]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
        ctx.load_cert_chain(cert, key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(60)
        print(f"listening {listener.getsockname()[1]}", flush=True)
        raw, _ = listener.accept()
        raw.settimeout(60)
        with ctx.wrap_socket(raw, server_side=True) as sock:
            exchange_as_server(sock, int(n))
            print(f"ok {n} peer={common_name(sock)}", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test reads the reason
        print(f"error {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
