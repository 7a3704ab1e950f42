"""Members of a zip read by their offsets, without a `zipfile.ZipFile` (whose per-member
objects would cost every DataLoader worker memory in proportion to the archive).

The table (`ZipTable`: each member's local-header offset, compressed and declared sizes and
method) comes from the central directory once; a read seeks to the member's local header,
skips it, and inflates at most `limit + 1` bytes, so that a member inflating beyond the limit
is refused after `limit + 1` bytes whatever its header declares (PKWARE APPNOTE 4.3.7).
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, List, Tuple

import numpy as np

LOCAL_HEADER = struct.Struct("<4s22xHH")   # signature … file name length, extra field length
STORED, DEFLATED = 0, 8


class MemberError(OSError):
    """A member that cannot be read (the message says why)."""


@dataclass
class ZipTable:
    """Per member (rows aligned with a list of names): local header offset, compressed size,
    declared size, compression method, general-purpose flags."""
    offsets: np.ndarray
    compressed: np.ndarray
    sizes: np.ndarray
    methods: np.ndarray
    flags: np.ndarray

    @classmethod
    def of(cls, infos: List[zipfile.ZipInfo]) -> "ZipTable":
        columns = [[i.header_offset for i in infos], [i.compress_size for i in infos],
                   [i.file_size for i in infos], [i.compress_type for i in infos],
                   [i.flag_bits for i in infos]]
        return cls(*(np.asarray(c, dtype=np.int64).reshape(-1) for c in columns))

    def to_lists(self) -> List[list]:
        return [a.tolist() for a in (self.offsets, self.compressed, self.sizes, self.methods,
                                     self.flags)]

    @classmethod
    def from_lists(cls, lists: List[list]) -> "ZipTable":
        return cls(*(np.asarray(a, dtype=np.int64).reshape(-1) for a in lists))


def zip_listing(path: Path) -> Tuple[List[zipfile.ZipInfo], "ZipTable"]:
    """The file members of a zip (directories left out) and their table."""
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
    return infos, ZipTable.of(infos)


def read_member(f: BinaryIO, table: ZipTable, row: int, limit: int) -> bytes:
    """At most `limit + 1` bytes of member `row` (more than `limit`: the caller refuses it)."""
    if table.flags[row] & 0x1:
        raise MemberError("the member is encrypted")
    f.seek(int(table.offsets[row]))
    signature, name_length, extra_length = LOCAL_HEADER.unpack(f.read(LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise MemberError("no local file header where the central directory points")
    f.seek(int(table.offsets[row]) + LOCAL_HEADER.size + name_length + extra_length)
    method, compressed = int(table.methods[row]), int(table.compressed[row])
    if method == STORED:
        return f.read(min(compressed, limit + 1))
    if method != DEFLATED:
        raise MemberError(f"compression method {method} is not supported (stored or deflated)")
    inflate, parts, total, remaining = zlib.decompressobj(-zlib.MAX_WBITS), [], 0, compressed
    try:
        while remaining and total <= limit:    # max_length stops at limit + 1 inflated bytes
            chunk = f.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
            parts.append(inflate.decompress(chunk, limit + 1 - total))
            total += len(parts[-1])
    except zlib.error as err:
        raise MemberError(f"corrupt deflate data ({err})") from None
    return b"".join(parts)
