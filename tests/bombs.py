"""Zip bombs for the archive tests, built without compressing a gigabyte each time."""

from __future__ import annotations

import io
import zipfile
import zlib

MIB = 1024 * 1024


def zero_entries(count: int = 1024, size: int = MIB, name: str = "images/{:04d}.jpg") -> bytes:
    """A zip of ``count`` deflated entries of ``size`` zero bytes each, every one under the
    per-entry ratio rule's size, together far over any sane ratio (1024 x 1 MiB: 1 GiB from 1 MiB).

    The one compressed payload is written ``count`` times through zipfile's own header code;
    compressing each entry for real would take seconds.
    """
    zeros = bytes(size)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(zeros) + packer.flush()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            info = zipfile.ZipInfo(name.format(index))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size, info.compress_size, info.CRC = size, len(packed), zlib.crc32(zeros)
            info.header_offset = buffer.tell()
            buffer.write(info.FileHeader())
            buffer.write(packed)
            archive.filelist.append(info)
            archive.NameToInfo[info.filename] = info
        archive.start_dir = buffer.tell()  # the central directory follows, written on close
    return buffer.getvalue()
