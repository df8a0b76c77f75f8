"""A minimal HTTP/1.1 keep-alive client over raw sockets, sync and asyncio.

The benchmark measures microseconds: a full client library would add its own
tens of microseconds and its own noise to every sample, so requests are
pre-built bytes and responses are read with nothing but the framing."""

from __future__ import annotations

import asyncio
import socket


def build_request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: bench"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


class SyncConn:
    """One keep-alive connection; reconnects when the server closes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf.clear()
        return s

    def _fill(self, s: socket.socket) -> None:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        self.buf += chunk

    def _take(self, s: socket.socket, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill(s)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _line(self, s: socket.socket) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill(s)
        out = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return out

    def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = self._connect()
        s = self.sock
        s.sendall(request)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill(s)
        status, headers = _head(bytes(self.buf[:end]))
        del self.buf[: end + 4]
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while (size := int(self._line(s).split(b";")[0], 16)) > 0:
                body += self._take(s, size)
                self._line(s)
            self._line(s)
            data = bytes(body)
        else:
            data = self._take(s, int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class AsyncConn:
    """The asyncio twin of SyncConn, for many concurrent connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status, headers = _head(raw[:-4])
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while (size := int((await self.reader.readline()).strip().split(b";")[0], 16)) > 0:
                body += await self.reader.readexactly(size)
                await self.reader.readline()
            await self.reader.readline()
            data = bytes(body)
        else:
            data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self.reader = self.writer = None
