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

    def take(self, rows) -> "ZipTable":
        return ZipTable(*(a[rows] for a in (self.offsets, self.compressed, self.sizes,
                                              self.methods, self.flags)))


CENTRAL = struct.Struct("<4s4B4HL2L5H2L")     # a central directory file header (APPNOTE 4.3.12)
ZIP64_EXTRA = 0x0001


def _zip64(extra: bytes, values: List[int]) -> List[int]:
    """(declared size, compressed size, offset) with the 0xFFFFFFFF ones taken, in this order,
    from the Zip64 extended information field (APPNOTE 4.5.3)."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == ZIP64_EXTRA:
            field, out = extra[at + 4:at + 4 + length], list(values)
            taken = 0
            for k, value in enumerate(values):
                if value == 0xFFFFFFFF:
                    out[k] = struct.unpack_from("<Q", field, taken)[0]
                    taken += 8
            return out
        at += 4 + length
    return values


def zip_listing(path: Path) -> Tuple[List[str], List[int], ZipTable]:
    """(names, CRCs, `ZipTable`) of a zip's file members (directories left out), read from its
    central directory in one pass (far fewer objects than `zipfile.ZipFile`'s per member)."""
    with open(path, "rb") as f:
        end = zipfile._EndRecData(f)          # the end records, Zip64 included, as zipfile reads
        if end is None:
            raise MemberError(f"{path} is not a zip file")
        size, offset = end[zipfile._ECD_SIZE], end[zipfile._ECD_OFFSET]
        concat = end[zipfile._ECD_LOCATION] - size - offset   # bytes prepended to the archive
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
            concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        f.seek(offset + concat)
        directory = f.read(size)
    names, crcs, columns, at = [], [], [[], [], [], [], []], 0
    while at + CENTRAL.size <= len(directory):
        (signature, _, _, _, _, flags, method, _, _, crc, compressed, declared, name_length,
         extra_length, comment_length, _, _, _, local) = CENTRAL.unpack_from(directory, at)
        if signature != b"PK\x01\x02":
            raise MemberError(f"{path}: a broken central directory")
        start = at + CENTRAL.size
        raw = directory[start:start + name_length]
        extra = directory[start + name_length:start + name_length + extra_length]
        at = start + name_length + extra_length + comment_length
        name = raw.decode("utf-8" if flags & 0x800 else "cp437")
        if name.endswith("/"):
            continue
        declared, compressed, local = _zip64(extra, [declared, compressed, local])
        names.append(name)
        crcs.append(crc)
        for column, value in zip(columns, (local + concat, compressed, declared, method, flags)):
            column.append(value)
    return names, crcs, ZipTable(*(np.asarray(c, dtype=np.int64) for c in columns))


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
