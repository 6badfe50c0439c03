"""The ``zip-crc32`` checksum of a tensor file: reuse the CRC-32 that ``torch.save`` already computes.

A ``torch.save`` file is a zip archive whose central directory records a CRC-32 of every record (one
per tensor storage, plus the pickle). The checksum of the whole file is the CRC-32 of its central
directory and end records; verifying it checks that CRC, then every record's data against the CRC
the directory lists for it, reading the data where ``torch.load`` will (after each local header). ``RecordChecker`` does the latter from the
bytes ``torch.load`` reads anyway, so importing reads each byte once.
Writing therefore costs nothing beyond ``torch.save`` itself, and damage anywhere a reader looks is
caught: in the data, in a local header (the data would shift), in the directory or its end record.

``read(offset, size) -> bytes`` gives the file's bytes, offsets relative to the archive's start.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator

from onthefly.sessions.digest import crc32

Read = Callable[[int, int], bytes]

EOCD = struct.Struct("<4s4H2LH")          # signature, disks, entries on disk, entries, cd size, cd offset, comment
ZIP64_LOCATOR = struct.Struct("<4sLQL")   # signature, disk, zip64 end record offset, disks
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disks, entries on disk, entries, cd size, cd offset
CENTRAL = struct.Struct("<4s6H3L5H2L")    # the fixed part of a central directory entry
LOCAL = struct.Struct("<4s5H3L2H")        # the fixed part of a local file header
CHUNK = 8 << 20


class NotAZip(ValueError):
    """The bytes are not a zip archive this module can check."""


def _end_records(read: Read, size: int) -> tuple[int, int, int]:
    """(central directory offset, its size, number of entries)."""
    tail_len = min(size, EOCD.size + 0xFFFF)
    tail = read(size - tail_len, tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < EOCD.size:
        raise NotAZip("no end of central directory record")
    _, _, _, _, entries, cd_size, cd_offset, _ = EOCD.unpack_from(tail, at)
    if cd_offset == 0xFFFFFFFF or entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc_at = at - ZIP64_LOCATOR.size
        if loc_at < 0 or tail[loc_at:loc_at + 4] != b"PK\x06\x07":
            raise NotAZip("a zip64 archive without its zip64 locator")
        _, _, z64_offset, _ = ZIP64_LOCATOR.unpack_from(tail, loc_at)
        record = read(z64_offset, ZIP64_EOCD.size)
        if len(record) < ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            raise NotAZip("a damaged zip64 end record")
        _, _, _, _, _, _, _, entries, cd_size, cd_offset = ZIP64_EOCD.unpack(record)
    if cd_offset + cd_size > size:
        raise NotAZip("the central directory lies outside the file")
    return cd_offset, cd_size, entries


def _entries(directory: bytes, count: int) -> Iterator[tuple[int, int, int]]:
    """(local header offset, data size, crc) of every entry of a central directory."""
    pos = 0
    for _ in range(count):
        if directory[pos:pos + 4] != b"PK\x01\x02" or pos + CENTRAL.size > len(directory):
            raise NotAZip("a damaged central directory entry")
        fields = CENTRAL.unpack_from(directory, pos)
        method, crc, comp_size, usize = fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
        if method != 0:
            raise NotAZip("a compressed record (torch.save stores records uncompressed)")
        extra = directory[pos + CENTRAL.size + name_len: pos + CENTRAL.size + name_len + extra_len]
        if 0xFFFFFFFF in (comp_size, usize, offset):
            comp_size, usize, offset = _zip64_extra(extra, comp_size, usize, offset)
        if usize != comp_size:  # a stored record inflates to nothing more than its bytes
            raise NotAZip("a record whose declared sizes disagree")
        yield offset, comp_size, crc
        pos += CENTRAL.size + name_len + extra_len + comment_len


def _zip64_extra(extra: bytes, comp_size: int, usize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if usize == 0xFFFFFFFF:
                usize = values.pop(0)
            if comp_size == 0xFFFFFFFF:
                comp_size = values.pop(0)
            if offset == 0xFFFFFFFF:
                offset = values.pop(0)
            return comp_size, usize, offset
        pos += 4 + length
    raise NotAZip("a zip64 entry without its zip64 sizes")


def checksum(read: Read, size: int) -> str | None:
    """The archive's ``zip-crc32`` (CRC-32 of its central directory and end records, hex), or None when
    its records carry no CRC (``torch.serialization.set_crc32_options(False)``) or it is no zip."""
    try:
        cd_offset, _, count = _end_records(read, size)
        tail = read(cd_offset, size - cd_offset)
        if any(crc == 0 and n > 0 for _, n, crc in _entries(tail, count)):
            return None
    except NotAZip:
        return None
    return f"{crc32(tail):08x}"


def plain(read: Read, size: int) -> None:
    """Raise NotAZip unless every record is stored uncompressed with sizes inside the file: what
    ``torch.save`` writes, and what ``torch.load`` can read without inflating anything (a zip bomb
    of compressed records is refused before a byte of it is inflated)."""
    cd_offset, cd_size, count = _end_records(read, size)
    directory = read(cd_offset, cd_size)
    total = 0
    for offset, length, _ in _entries(directory, count):
        total += length
        if offset + length > cd_offset or total > size:
            raise NotAZip("records that claim more data than the file holds")


class Damaged(ValueError):
    """The archive does not match its checksum; the message says where."""


def records(read: Read, size: int, expected: str) -> list[tuple[int, int, int]]:
    """Every record's (data offset, size, CRC), once the directory matched ``expected``; else Damaged."""
    try:
        cd_offset, _, count = _end_records(read, size)
        tail = read(cd_offset, size - cd_offset)
        if f"{crc32(tail):08x}" != expected:
            raise Damaged("its central directory does not match its checksum")
        out = []
        for index, (offset, length, crc) in enumerate(_entries(tail, count)):
            header = read(offset, LOCAL.size)
            if len(header) < LOCAL.size or header[:4] != b"PK\x03\x04":
                raise Damaged(f"record {index} has a damaged local header")
            fields = LOCAL.unpack(header)
            start = offset + LOCAL.size + fields[9] + fields[10]  # after the name and the extra field
            if start + length > cd_offset:
                raise Damaged(f"record {index} runs past the records' end")
            out.append((start, length, crc))
    except NotAZip as exc:
        raise Damaged(str(exc)) from None
    return sorted(out)


class RecordChecker:
    """Checks records' CRCs from the bytes a reader reads anyway (``torch.load`` through a file object):
    ``seen(offset, view)`` after each read; ``finish(read_into)`` reads only what was never seen, then
    raises Damaged on a mismatch. Records must not overlap (``records`` returns them sorted)."""

    def __init__(self, found: list[tuple[int, int, int]]) -> None:
        self._records = found
        self._starts = [r[0] for r in found]
        self._done = [0] * len(found)
        self._crc = [0] * len(found)

    def seen(self, offset: int, view: memoryview) -> None:
        import bisect

        end = offset + len(view)
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while i < len(self._records) and self._records[i][0] < end:
            start, length, _ = self._records[i]
            at = start + self._done[i]  # the first byte of this record not yet checked
            stop = min(end, start + length)
            if offset <= at < stop:
                self._crc[i] = crc32(view[at - offset:stop - offset], self._crc[i])
                self._done[i] = stop - start
            i += 1

    def finish(self, read_into: Callable[[int, memoryview], int]) -> None:
        buffer = None
        for index, (start, length, crc) in enumerate(self._records):
            value, done = self._crc[index], self._done[index]
            while done < length:
                buffer = buffer if buffer is not None else memoryview(bytearray(CHUNK))
                n = read_into(start + done, buffer[: min(CHUNK, length - done)])
                if n <= 0:
                    raise Damaged(f"record {index} is cut short")
                value = crc32(buffer[:n], value)
                done += n
            if value != crc:
                raise Damaged(f"record {index} does not match its CRC")


def damage(read: Read, size: int, expected: str, read_into: Callable[[int, memoryview], int] | None = None
           ) -> str | None:
    """None if the archive matches ``expected`` and every record its CRC; else what is wrong.
    ``read_into(offset, view) -> count`` (optional) reads record data into a reused buffer."""
    if read_into is None:
        def read_into(offset: int, view: memoryview) -> int:
            data = read(offset, len(view))
            view[:len(data)] = data
            return len(data)
    try:
        RecordChecker(records(read, size, expected)).finish(read_into)
    except Damaged as exc:
        return str(exc)
    return None
