#!/usr/bin/env python3
"""A Python protobuf peer for buffstreams-rs's interop tests (examples/tests/interop).

It frames `google.protobuf.Any` messages the way Python protobuf users write and read a
delimited stream (what Java's writeDelimitedTo / parseDelimitedFrom do): the message size as a
varint from protobuf's own encoder (`_VarintBytes`), read back with protobuf's own decoder
(`_DecodeVarint32`), the message itself serialized and parsed by the protobuf library.

    peer.py [--max M] write HOST:PORT SPEC   one connection; per SPEC line:
                                   `msg URL VALUE` (hex value, `-` for empty) a message,
                                   `raw HEX` bytes as they are; then closes.
                                   Prints `wrote N` or `error after N: WHY`.
    peer.py [--max M] read         listens on 127.0.0.1, prints `listening PORT`, accepts one
                                   connection and prints `msg URL VALUE` per message, then
                                   `end` (clean end) or `error KIND: WHY`; a message declared
                                   longer than M bytes (default 2 GiB - 1) is an error.
"""
import socket
import sys

from google.protobuf import any_pb2
from google.protobuf.internal import decoder, encoder


def unhex(field):
    return b"" if field == "-" else bytes.fromhex(field)


def write(addr, spec_path):
    host, port = addr.rsplit(":", 1)
    done = 0
    try:
        sock = socket.create_connection((host, int(port)))
        with open(spec_path) as spec:
            for line in spec:
                kind, *rest = line.split()
                if kind == "msg":
                    url, value = rest
                    body = any_pb2.Any(
                        type_url="" if url == "-" else url, value=unhex(value)
                    ).SerializeToString()
                    sock.sendall(encoder._VarintBytes(len(body)) + body)
                elif kind == "raw":
                    sock.sendall(unhex(rest[0]))
                else:
                    raise ValueError(f"bad spec line {line!r}")
                done += 1
        sock.close()
    except OSError as e:
        print(f"error after {done}: {e}")
        return
    print(f"wrote {done}")


def read(max_len):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    print("listening", server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    stream = conn.makefile("rb")
    out = sys.stdout
    while True:
        header = b""
        while not header or (header[-1] & 0x80 and len(header) < 10):
            byte = stream.read(1)
            if not byte:
                out.write("end\n" if not header else "error eof: inside a header\n")
                return
            header += byte
        try:
            size, _ = decoder._DecodeVarint32(header, 0)
        except Exception as e:  # a varint longer than 10 bytes
            out.write(f"error varint: {e}\n")
            return
        if size > max_len:
            out.write(f"error too long: {size} > {max_len}\n")
            return
        body = stream.read(size)
        if len(body) < size:
            out.write(f"error eof: {len(body)} of {size} bytes\n")
            return
        message = any_pb2.Any()
        try:
            message.ParseFromString(body)
        except Exception as e:
            out.write(f"error parse: {e}\n")
            return
        out.write(f"msg {message.type_url or '-'} {message.value.hex() or '-'}\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    max_len = 2**31 - 1
    if args[:1] == ["--max"] and len(args) >= 2:
        max_len, args = int(args[1]), args[2:]
    if len(args) == 3 and args[0] == "write":
        write(args[1], args[2])
    elif args == ["read"]:
        read(max_len)
    else:
        sys.exit(__doc__)
