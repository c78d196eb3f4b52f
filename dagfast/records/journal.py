"""Journal framing: how batches of entries sit in the append-only `journal` file.

Each write appends one frame: an 8-byte header (payload length, CRC-32 of the payload,
both little-endian uint32) and a msgpack payload (an array of entries; the entry
schemas live in `store`). A frame is complete or it is not there: reading stops at the
first frame that is short or fails its CRC (a torn write), and everything before it is
kept. Nothing here knows what an entry means.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["HEADER", "frame", "frames"]

HEADER = struct.Struct("<II")
_crc = zlib.crc32


def frame(payload: bytes) -> bytes:
    """The bytes to append for one payload."""
    return HEADER.pack(len(payload), _crc(payload)) + payload


def frames(data: bytes, offset: int = 0) -> tuple[list[memoryview], int, bool]:
    """The payloads of the complete frames in `data` from `offset` on, the offset just
    past the last good one, and whether anything (a torn or corrupt frame) followed it."""
    view = memoryview(data)
    end = len(data)
    out = []
    pos = offset
    size = HEADER.size
    while pos + size <= end:
        length, crc = HEADER.unpack_from(data, pos)
        stop = pos + size + length
        if length == 0 or stop > end:
            break
        payload = view[pos + size:stop]
        if _crc(payload) != crc:
            break
        out.append(payload)
        pos = stop
    return out, pos, pos != end
