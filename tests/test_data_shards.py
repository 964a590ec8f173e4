"""Shard format: round trip, and every corruption the reader must refuse with a useful message."""

import numpy as np
import pytest

from data.shards import (
    EOT,
    HEADER_BYTES,
    MAGIC,
    VOCAB_SIZE,
    ShardError,
    find_shards,
    read_header,
    read_shard,
    shard_name,
    verify_shards,
    write_shard,
)


def _tokens(n=1000, seed=0):
    t = np.random.default_rng(seed).integers(0, VOCAB_SIZE, size=n)
    t[0] = EOT
    return t


def test_round_trip(tmp_path):
    toks = _tokens()
    path = write_shard(tmp_path / shard_name("fineweb", "train", 1), toks)
    assert path.name == "fineweb_train_000001.bin"
    assert path.stat().st_size == HEADER_BYTES + 2 * len(toks)
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[:3].tolist() == [MAGIC, 1, len(toks)] and not header[3:].any()
    got = read_shard(path)
    assert got.dtype == np.uint16 and np.array_equal(got, toks)
    assert read_header(path) == len(toks)
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_empty_shard_and_names(tmp_path):
    write_shard(tmp_path / "x_val_000000.bin", [])
    assert len(read_shard(tmp_path / "x_val_000000.bin")) == 0
    assert shard_name("shakespeare", "val", 0) == "shakespeare_val_000000.bin"
    with pytest.raises(ValueError, match="split"):
        shard_name("x", "test", 0)


def test_writer_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="50257"):
        write_shard(tmp_path / "a.bin", [1, 2, VOCAB_SIZE])
    with pytest.raises(ValueError, match="min -1"):
        write_shard(tmp_path / "a.bin", [-1, 2])
    with pytest.raises(ValueError, match="1-D"):
        write_shard(tmp_path / "a.bin", np.zeros((2, 2), dtype=np.int64))
    assert not (tmp_path / "a.bin").exists()


def _corrupt(tmp_path, how):
    path = write_shard(tmp_path / "fineweb_train_000003.bin", _tokens(100))
    raw = bytearray(path.read_bytes())
    if how == "magic":
        raw[0:4] = np.int32(12345).tobytes()
    elif how == "version":
        raw[4:8] = np.int32(7).tobytes()
    elif how == "header":
        raw = raw[:100]
    elif how == "truncated":
        raw = raw[:-10]
    elif how == "count":
        raw += b"\x00\x00" * 5
    elif how == "negative":
        raw[8:12] = np.int32(-4).tobytes()
    elif how == "id":
        raw[HEADER_BYTES + 2 * 57 : HEADER_BYTES + 2 * 58] = np.uint16(60000).tobytes()
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    "how, problem",
    [
        ("magic", "wrong magic number 12345"),
        ("version", "unsupported version 7"),
        ("header", "truncated header"),
        ("truncated", "truncated: the header promises 100 tokens"),
        ("count", "token count disagrees with the file size"),
        ("negative", "negative token count"),
        ("id", "token id 60000 at token 57 is outside the vocabulary"),
    ],
)
def test_corruption_is_refused_with_file_problem_and_remedy(tmp_path, how, problem):
    path = _corrupt(tmp_path, how)
    with pytest.raises(ShardError) as e:
        read_shard(path)
    msg = str(e.value)
    assert str(path) in msg and problem in msg
    assert "python -m data.fineweb download" in msg  # how to get a good copy, from the prefix
    assert isinstance(e.value, ValueError)


def test_missing_file_and_remedy_by_prefix(tmp_path):
    with pytest.raises(ShardError, match="no such file.*python -m data.shakespeare"):
        read_shard(tmp_path / "shakespeare_val_000000.bin")
    with pytest.raises(ShardError, match="python -m data.synthetic"):
        read_shard(tmp_path / "synthetic_train_000000.bin")


def test_id_check_is_cached_but_sees_a_rewrite(tmp_path):
    path = write_shard(tmp_path / "s_train_000000.bin", _tokens(50))
    read_shard(path)
    read_shard(path)  # cached: no second scan (covered by the key check below)
    bad = _tokens(50)
    bad[10] = 65535
    raw = np.concatenate([np.fromfile(path, dtype="<i4", count=256).view(np.uint16), bad.astype(np.uint16)])
    raw.tofile(path)  # same size, new mtime
    import os

    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ShardError, match="65535"):
        read_shard(path)
    assert len(read_shard(path, check_all_ids=False)) == 50  # header/size still checked, ids not


def test_smaller_vocab(tmp_path):
    path = write_shard(tmp_path / "t_train_000000.bin", [1, 2, 300])
    with pytest.raises(ShardError, match="ids must be < 256"):
        read_shard(path, vocab_size=256)


def test_find_and_verify(tmp_path):
    for i in (2, 0, 1):
        write_shard(tmp_path / shard_name("p", "train", i), _tokens(10 + i))
    (tmp_path / "p_train_000009.bin.tmp").write_bytes(b"partial")
    paths = find_shards(tmp_path / "p_train_*")
    assert [p.name for p in paths] == [shard_name("p", "train", i) for i in range(3)]
    assert verify_shards(paths) == 33
