"""data.zipmembers: members read by offset equal zipfile's; inflation stops past the limit
whatever the header declares; unsupported methods are named."""
import zipfile

import numpy as np
import pytest

from data.zipmembers import MemberError, read_member, zip_listing


def test_members_read_by_offset_equal_zipfiles(tmp_path):
    rng = np.random.default_rng(0)
    contents = {f"d/{i}.bin": rng.integers(0, 4, 5000 + 997 * i, dtype=np.uint8).tobytes()
                for i in range(6)}
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i, (name, data) in enumerate(contents.items()):
            archive.writestr(name, data, zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    names, _, table = zip_listing(path)
    with open(path, "rb") as f:
        for row, name in enumerate(names):
            assert read_member(f, table, row, 1 << 20) == contents[name]


def test_inflation_stops_past_the_limit(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.png", bytes(50 << 20))            # 50 MiB in ~50 kB
    _, _, table = zip_listing(path)
    table.sizes[:] = 10                                           # a header that lies
    with open(path, "rb") as f:
        assert len(read_member(f, table, 0, 1000)) == 1001


def test_unsupported_methods_are_named(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("a.png", b"123")
    _, _, table = zip_listing(path)
    with open(path, "rb") as f, pytest.raises(MemberError, match="method 14 is not supported"):
        read_member(f, table, 0, 1000)


@pytest.mark.parametrize("zip64, prefix", [(False, b""), (True, b""), (True, b"#!/bin/sh\n"),
                                           (False, b"x" * 100)])
def test_the_central_directory_is_read_as_zipfile_reads_it(tmp_path, monkeypatch, zip64,
                                                           prefix):
    if zip64:   # Zip64 end records and extra fields without writing 4 GiB or 65,536 members
        monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 10)
    path = tmp_path / "a.zip"
    with open(path, "wb") as raw:
        raw.write(prefix)                                  # e.g. a self-extracting stub
        with zipfile.ZipFile(raw, "w") as archive:
            archive.writestr("dir/", b"")
            for i in range(7):
                archive.writestr(f"dir/é{i}.png", bytes(range(i * 20)),
                                 zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    monkeypatch.undo()
    names, crcs, table = zip_listing(path)
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        assert names == [i.filename for i in infos] and crcs == [i.CRC for i in infos]
        assert table.sizes.tolist() == [i.file_size for i in infos]
        assert table.compressed.tolist() == [i.compress_size for i in infos]
        with open(path, "rb") as f:
            for row, info in enumerate(infos):
                assert read_member(f, table, row, 1000) == archive.read(info)
