"""Length-prefixed JSON frames over pipes and sockets: the sandbox's wire format, in one place.

Both ends use this module: the trainer side (``sandbox.py``, as ``azr.executor._frames``) and the zygote
(``_zygote.py``), which runs as a standalone script (``python -S _zygote.py``) and imports it by its bare name
from its own directory. So it is stdlib only and imports nothing of azr.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
"""

from __future__ import annotations

import json
import os
import struct

HEADER = struct.Struct(">I")
READ_CHUNK = 1 << 20


def encode(obj: dict) -> bytes:
    """One frame holding `obj`."""
    data = json.dumps(obj).encode()
    return HEADER.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (a pipe may take a large write in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_frame(fd: int, obj: dict) -> None:
    write_all(fd, encode(obj))


def read_exact(fd: int, n: int) -> bytes | None:
    """Exactly `n` bytes from a blocking `fd`; None at end of file."""
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(fd: int) -> dict | None:
    """The next frame from a blocking `fd`; None at end of file (also inside a frame)."""
    header = read_exact(fd, HEADER.size)
    body = read_exact(fd, HEADER.unpack(header)[0]) if header else None
    return None if body is None else json.loads(body)


def read_available(fd: int, buf: bytearray, limit: int | None = None) -> bool:
    """Append what a non-blocking `fd` holds now to `buf`, stopping early once `buf` is over `limit` bytes (the
    caller tells that case by the size). True when the writer has closed its end."""
    while limit is None or len(buf) <= limit:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        buf += chunk
    return False


def split_frames(buf: bytearray) -> list[dict]:
    """The complete frames at the start of `buf`, removed from it. A frame that is not JSON comes back as ``{}``,
    so the reader can treat it as the protocol failure it is instead of crashing on it."""
    out = []
    while len(buf) >= HEADER.size:
        n = HEADER.unpack_from(buf)[0]
        if len(buf) < HEADER.size + n:
            break
        try:
            out.append(json.loads(bytes(buf[HEADER.size:HEADER.size + n]).decode()))
        except (ValueError, UnicodeDecodeError):
            out.append({})
        del buf[:HEADER.size + n]
    return out
