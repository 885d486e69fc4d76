"""Is a broker answering? One small raw-socket handshake per protocol, no client library needed.

A port that accepts connections is not yet a broker that works (RabbitMQ opens its port before it
accepts logins), so each probe speaks just enough of the broker's protocol to get a real answer.
"""

from __future__ import annotations

import os
import socket
import struct
from urllib.parse import unquote, urlsplit

__all__ = ["ProbeError", "address", "check"]


class ProbeError(Exception):
    """The broker answered, but not (yet) as a working broker does."""


def address(kind: str, url: str) -> tuple[str, int]:
    """The first ``(host, port)`` that ``url`` names (a URL, or Kafka's ``host:port,...``)."""
    if kind == "kafka":
        first = url.split(",")[0].strip()
        host, _, port = first.split("://")[-1].rpartition(":")
        return host.strip("[]"), int(port)
    parts = urlsplit(url)
    default = 6379 if kind == "redis" else 5672
    return parts.hostname or "127.0.0.1", parts.port or default


def check(kind: str, url: str, timeout: float = 2.0) -> None:
    """Return if the broker at ``url`` answers its protocol; raise OSError or ProbeError if not."""
    host, port = address(kind, url)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if kind == "kafka":
            _kafka_api_versions(sock)
            return
        parts = urlsplit(url)
        if parts.scheme in ("rediss", "amqps"):
            return  # TLS: an open port is all we can see without a TLS handshake
        user = unquote(parts.username or "")
        password = None if parts.password is None else unquote(parts.password)
        if kind == "redis":
            _redis_ping(sock, user, password)
        else:
            _amqp_login(sock, user or "guest", password or "guest")


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProbeError("the broker closed the connection")
        data += chunk
    return data


def _resp(*words: str) -> bytes:
    """A Redis command as RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _redis_line(sock: socket.socket) -> bytes:
    """One reply line: the probe's commands all answer with a single line."""
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ProbeError("redis closed the connection")
        reply += chunk
    return reply


def _redis_ping(sock: socket.socket, user: str, password: str | None) -> None:
    """AUTH with the URL's password (if any), then PING: a server that serves this URL answers
    +PONG; NOAUTH or WRONGPASS means the URL will not work, LOADING that it is not ready yet."""
    if password is not None:
        sock.sendall(_resp("AUTH", *filter(None, [user]), password))
        reply = _redis_line(sock)
        if not reply.startswith(b"+OK"):
            raise ProbeError(f"redis refused AUTH: {reply[:80]!r}")
    sock.sendall(_resp("PING"))
    reply = _redis_line(sock)
    if not reply.startswith(b"+PONG"):
        raise ProbeError(f"redis answered PING with {reply[:80]!r}")


def _amqp_frame(sock: socket.socket) -> tuple[int, int, bytes]:
    """Read one AMQP 0-9-1 frame: ``(type, class id, method id)`` and the method's arguments."""
    header = _recv_exactly(sock, 7)
    if header.startswith(b"AMQP"):
        raise ProbeError(f"the server wants another AMQP version: {header + sock.recv(1)!r}")
    frame_type, _channel, size = struct.unpack(">BHI", header)
    payload = _recv_exactly(sock, size + 1)[:-1]  # the frame ends with 0xCE
    class_id, method_id = struct.unpack(">HH", payload[:4])
    return frame_type, class_id * 1000 + method_id, payload[4:]


def _shortstr(value: bytes) -> bytes:
    return struct.pack(">B", len(value)) + value


def _amqp_login(sock: socket.socket, user: str, password: str) -> None:
    """Protocol header, Connection.Start, Start-Ok with PLAIN credentials, then Tune = logged in."""
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    frame_type, method, _ = _amqp_frame(sock)
    if (frame_type, method) != (1, 10_010):
        raise ProbeError(f"expected Connection.Start, got frame {frame_type} method {method}")
    response = b"\0" + user.encode() + b"\0" + password.encode()
    # client-properties asks to be told of a refused login (else RabbitMQ just hangs up, later)
    capability = _shortstr(b"authentication_failure_close") + b"t\x01"
    capabilities = _shortstr(b"capabilities") + b"F" + struct.pack(">I", len(capability))
    arguments = (
        struct.pack(">HHI", 10, 11, len(capabilities + capability))  # Connection.Start-Ok
        + capabilities
        + capability
        + _shortstr(b"PLAIN")
        + struct.pack(">I", len(response))
        + response
        + _shortstr(b"en_US")
    )
    sock.sendall(struct.pack(">BHI", 1, 0, len(arguments)) + arguments + b"\xce")
    _, method, arguments = _amqp_frame(sock)
    if method == 10_030:  # Connection.Tune: the credentials were accepted
        return
    if method == 10_050:  # Connection.Close: reply-code, reply-text
        code, length = struct.unpack(">HB", arguments[:3])
        raise ProbeError(f"RabbitMQ refused the login: {code} {arguments[3 : 3 + length].decode()}")
    raise ProbeError(f"unexpected AMQP method {method} after Start-Ok")


def _kafka_api_versions(sock: socket.socket) -> None:
    """ApiVersions v0 (key 18): the first request every Kafka client sends."""
    correlation = int.from_bytes(os.urandom(4), "big") >> 1
    client = b"eventsource-lab"
    request = struct.pack(">hhih", 18, 0, correlation, len(client)) + client
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
    answer, error = struct.unpack(">ih", _recv_exactly(sock, size)[:6])
    if answer != correlation or error != 0:
        raise ProbeError(f"ApiVersions answered correlation {answer}, error code {error}")
