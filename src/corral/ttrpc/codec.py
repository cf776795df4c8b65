"""ttrpc framing: a 10-byte big-endian header (length u32, stream id u32, type u8, flags u8)
followed by `length` bytes of protobuf payload."""

import struct

from corral.ttrpc.errors import RESOURCE_EXHAUSTED, TtrpcError

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10
MESSAGE_LENGTH_MAX = 4 << 20

TYPE_REQUEST = 1
TYPE_RESPONSE = 2
TYPE_DATA = 3

FLAG_REMOTE_CLOSED = 0x1
FLAG_REMOTE_OPEN = 0x2
FLAG_NO_DATA = 0x4


def encode(stream_id, mtype, payload, flags=0):
    """One frame as bytes; refuses payloads over the 4 MiB limit."""
    if len(payload) > MESSAGE_LENGTH_MAX:
        raise TtrpcError(RESOURCE_EXHAUSTED,
                         f"message length {len(payload)} exceeds maximum message size of {MESSAGE_LENGTH_MAX}")
    return HEADER.pack(len(payload), stream_id, mtype, flags) + payload


def decode_header(data):
    """(length, stream_id, type, flags) from the first 10 bytes."""
    return HEADER.unpack(data[:HEADER_SIZE])


class OversizedFrame(Exception):
    """A frame longer than the limit arrived; its payload was skipped."""

    def __init__(self, stream_id, mtype, length):
        super().__init__(f"message length {length} exceeds maximum message size of {MESSAGE_LENGTH_MAX}")
        self.stream_id, self.mtype, self.length = stream_id, mtype, length


async def read_frame(reader):
    """Read one frame from an asyncio StreamReader: (stream_id, type, flags, payload).
    Raises asyncio.IncompleteReadError at EOF, OversizedFrame (after discarding the
    payload, so the connection stays usable) when the length is over the limit."""
    length, stream_id, mtype, flags = HEADER.unpack(await reader.readexactly(HEADER_SIZE))
    if length > MESSAGE_LENGTH_MAX:
        left = length
        while left:
            chunk = await reader.read(min(left, 1 << 16))
            if not chunk:
                await reader.readexactly(1)  # raises IncompleteReadError
            left -= len(chunk)
        raise OversizedFrame(stream_id, mtype, length)
    payload = await reader.readexactly(length) if length else b""
    return stream_id, mtype, flags, payload
