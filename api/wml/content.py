"""A WML content upload: raw bytes with no file name, named by what they start with.

IBM's client PUTs the file's bytes (a .tgz, a zip or .keras) with no name; the model store
picks its unpacker by the name's extension, so the bytes' magic gives one.
"""

from __future__ import annotations

from typing import IO

from shared.errors import UnsupportedModelFile

# The first bytes of each kind of file a WML client uploads, and the name that makes the
# model store unpack it (tarfile opens any compression of a tar under .tgz).
_MAGIC = (
    (b"\x1f\x8b", 0, ".tgz"),
    (b"BZh", 0, ".tgz"),
    (b"\xfd7zXZ\x00", 0, ".tgz"),
    (b"ustar", 257, ".tgz"),
    (b"PK\x03\x04", 0, ".zip"),
    (b"\x89HDF\r\n\x1a\n", 0, ".h5"),
)
_HEAD_BYTES = 512


class PrefixedStream:
    """A stream whose first bytes were read already (to sniff the format)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        """The sniffed bytes first, then the rest of the stream."""
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._rest.read(size)


def read_head(stream: IO[bytes]) -> bytes:
    """The first bytes of ``stream`` (enough for every magic above), read whole."""
    head = b""
    while len(head) < _HEAD_BYTES and (block := stream.read(_HEAD_BYTES - len(head))):
        head += block
    return head


def upload_suffix(head: bytes) -> str:
    """The extension that makes the model store read a file starting with ``head``.

    Raises UnsupportedModelFile (400) for bytes that are no tar, zip or HDF5 file.
    """
    for magic, offset, suffix in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return suffix
    raise UnsupportedModelFile(
        "The content is not a tar archive (.tgz, .tar.gz), a zip (or Keras 3 .keras) or an "
        ".h5 file: send the bytes of the file that holds the model written by model.save().",
        details={"first_bytes": head[:8].hex()},
    )
