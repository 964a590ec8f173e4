"""FineWeb paths, offline: tokenizing local FineWeb-shaped files, resuming, and the download's validation."""

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data import fineweb
from data.shards import EOT, ShardError, find_shards, read_shard, write_shard
from data.tokenizer import encoding_from_ranks

FINEWEB_COLUMNS = dict(id="<urn:uuid>", dump="CC-MAIN-2024-10", url="https://example.org", date="2024-02-20",
                       file_path="s3://x", language="en", language_score=0.93, token_count=0)


@pytest.fixture
def ranks(tmp_path):
    tokens = [bytes([i]) for i in range(256)] + [b"th", b"he", b"the", b" t", b"in", b" the"]
    data = "".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(tokens)).encode()
    path = tmp_path / "small.tiktoken"
    path.write_bytes(data)
    return str(path), hashlib.sha256(data).hexdigest()


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "then", "in", "thin", "Ünïcode", "fox", "\n\n", "42", "  spaced", "end."]
    return [f"Doc {i}: " + " ".join(rng.choice(words, size=int(rng.integers(1, 60)))) for i in range(n)]


def _parquet(path, texts):
    pa = pytest.importorskip("pyarrow")  # imported here: a GPU node without pyarrow still collects this file
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([dict(text=t, **FINEWEB_COLUMNS) for t in texts]), path)
    return str(path)


def _all_tokens(out, prefix="fineweb"):
    paths = find_shards(out / f"{prefix}_val_*.bin") + find_shards(out / f"{prefix}_train_*.bin")
    return paths, np.concatenate([read_shard(p) for p in paths])


def _reference(texts, ranks):
    enc = encoding_from_ranks(ranks[0], ranks[1])
    return np.concatenate([[EOT] + enc.encode_ordinary(t) for t in texts])


def test_tokenize_parquet_matches_direct_encode(tmp_path, ranks):
    texts = _texts(120)
    src = _parquet(tmp_path / "000_00000.parquet", texts)
    out = tmp_path / "out"
    assert fineweb.main(["tokenize", "--out", str(out), "--files", src, "--shard-tokens", "500",
                         "--min-split-tokens", "500", "--workers", "2", "--bpe-ranks", ranks[0],
                         "--bpe-sha256", ranks[1]]) == 0
    paths, got = _all_tokens(out)
    ref = _reference(texts, ranks)
    assert np.array_equal(got, ref)
    assert paths[0].name == "fineweb_val_000000.bin" and paths[1].name == "fineweb_train_000001.bin"
    assert all(len(read_shard(p)) == 500 for p in paths[:-1]) and 0 < len(read_shard(paths[-1])) <= 500
    assert json.loads((out / "fineweb_tokenize_progress.json").read_text())["complete"] is True
    # a second run finds the work complete and only verifies
    fineweb.tokenize(out, "files", [src], 500, 1, ranks_path=ranks[0], ranks_sha256=ranks[1],
                     min_split_tokens=500)
    assert np.array_equal(_all_tokens(out)[1], ref)


def test_tokenize_resumes_to_identical_bytes(tmp_path, ranks):
    texts = _texts(80, seed=1)
    src = _parquet(tmp_path / "a.parquet", texts)
    kw = dict(ranks_path=ranks[0], ranks_sha256=ranks[1], docs_per_task=7, min_split_tokens=300)
    fineweb.tokenize(tmp_path / "whole", "files", [src], 300, 1, **kw)
    fineweb.tokenize(tmp_path / "parts", "files", [src], 300, 1, max_shards=2, **kw)  # "interrupted"
    progress = json.loads((tmp_path / "parts" / "fineweb_tokenize_progress.json").read_text())
    assert progress["shards_written"] == 2 and not progress["complete"]
    fineweb.tokenize(tmp_path / "parts", "files", [src], 300, 1, max_shards=3, **kw)
    fineweb.tokenize(tmp_path / "parts", "files", [src], 300, 1, **kw)
    whole, parts = _all_tokens(tmp_path / "whole"), _all_tokens(tmp_path / "parts")
    assert [p.name for p in whole[0]] == [p.name for p in parts[0]]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(whole[0], parts[0]))
    with pytest.raises(ValueError, match="belongs to a different run"):
        fineweb.tokenize(tmp_path / "parts", "files", [src], 999, 1, **kw)


def test_tokenize_jsonl_and_txt(tmp_path, ranks):
    texts = _texts(10, seed=2)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": t, "id": str(i)}) + "\n"
                                              for i, t in enumerate(texts[:6])))
    for i, t in enumerate(texts[6:]):
        (tmp_path / f"b{i}.txt").write_text(t)
    files = [str(tmp_path / "a.jsonl")] + [str(tmp_path / f"b{i}.txt") for i in range(4)]
    fineweb.tokenize(tmp_path / "out", "files", files, 500, 1, ranks_path=ranks[0], ranks_sha256=ranks[1],
                     min_split_tokens=500)
    assert np.array_equal(_all_tokens(tmp_path / "out")[1], _reference(texts, ranks))
    with pytest.raises(FileNotFoundError, match="no such input file"):
        fineweb.tokenize(tmp_path / "o2", "files", [str(tmp_path / "missing.jsonl")], 10, 1)
    (tmp_path / "x.csv").write_text("text\nhello\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        fineweb.tokenize(tmp_path / "o2", "files", [str(tmp_path / "x.csv")], 10, 1)
    assert not (tmp_path / "o2").exists()


def _fake_hub(good_tokens, calls, corrupt_first=()):
    """A stand-in for hf_hub_download that writes shards (the first download of some names corrupt)."""

    def fetch(repo_id, filename, repo_type, local_dir, force_download):
        assert repo_id == "kjj0/fineweb10B-gpt2" and repo_type == "dataset"
        calls.append(filename)
        path = write_shard(f"{local_dir}/{filename}", good_tokens)
        if filename in corrupt_first and calls.count(filename) == 1:
            path.write_bytes(path.read_bytes()[:-6])  # a truncated ("partial") file
        return str(path)

    return fetch


def test_download_skips_valid_and_replaces_bad_files(tmp_path, monkeypatch, capsys):
    toks = np.arange(1000) % 50257
    calls = []
    fake = _fake_hub(toks, calls, corrupt_first={"fineweb_train_000002.bin"})
    monkeypatch.setattr(fineweb, "_hf_hub_download", fake)
    out = tmp_path / "fw"
    assert fineweb.main(["download", "--train-shards", "2", "--out", str(out)]) == 0
    assert calls == ["fineweb_val_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin",
                     "fineweb_train_000002.bin"]  # the truncated download was not trusted
    assert "verified 3 shard(s): 3,000 tokens" in capsys.readouterr().out
    calls.clear()
    bad = out / "fineweb_train_000001.bin"
    bad.write_bytes(b"\x00" * 50)  # damaged on disk since
    fineweb.main(["download", "--train-shards", "3", "--out", str(out)])
    assert calls == ["fineweb_train_000001.bin", "fineweb_train_000003.bin"]  # valid ones skipped
    assert len(read_shard(bad)) == 1000


def test_download_gives_up_on_a_persistently_bad_file(tmp_path, monkeypatch):
    calls = []

    def always_bad(repo_id, filename, repo_type, local_dir, force_download):
        calls.append(force_download)
        path = tmp_path / filename
        path.write_bytes(b"junk")
        return str(path)

    monkeypatch.setattr(fineweb, "_hf_hub_download", always_bad)
    with pytest.raises(ShardError, match="invalid after two downloads"):
        fineweb.download(tmp_path, 0)
    assert calls == [False, True]
    with pytest.raises(ValueError, match="0..103"):
        fineweb.download(tmp_path, 104)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on leaving: a connection to it is refused at once


@pytest.mark.slow
def test_download_without_the_hub_exits_2_naming_host_and_route(tmp_path):
    """The real network path: huggingface_hub in a fresh process, its endpoint a closed local port. The hub
    retries five times with backoff before it gives up (~23 s); the process runs the CLI with time.sleep
    made a no-op, so the retries happen at once."""
    pytest.importorskip("huggingface_hub")
    port = _closed_port()
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf")}
    out = tmp_path / "fw"
    argv = ["data.fineweb", "download", "--train-shards", "2", "--out", str(out)]
    no_backoff = ("import runpy, sys, time; time.sleep = lambda s: None; sys.argv = " + repr(argv) +
                  "; runpy.run_module('data.fineweb', run_name='__main__', alter_sys=True)")
    proc = subprocess.run([sys.executable, "-c", no_backoff], cwd=Path(fineweb.__file__).resolve().parents[1],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    head = "python -m data.fineweb download: error:"
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(head)]
    assert len(errors) == 1, proc.stderr
    assert "could not reach 127.0.0.1 (ConnectionRefusedError: " in errors[0]
    assert "--train-shards 2 --out DIR" in errors[0]
    assert "data.train_files='DIR/fineweb_train_*.bin' data.val_files='DIR/fineweb_val_*.bin'" in errors[0]
    assert not list(out.glob("*.bin"))


def test_download_in_offline_mode_names_it(tmp_path, capsys):
    """HF_HUB_OFFLINE=1 (set by conftest): the real hf_hub_download refuses; exit 2, the variable named."""
    pytest.importorskip("huggingface_hub")
    assert fineweb.main(["download", "--train-shards", "0", "--out", str(tmp_path / "fw")]) == 2
    err = capsys.readouterr().err
    assert "error: HF_HUB_OFFLINE is set, so the hub is not contacted. Offline route: on a machine that " \
           "reaches huggingface.co" in err
    assert "Traceback" not in err


def test_download_keeps_errors_that_are_not_the_network(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")

    def refused(**kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    def broken(**kwargs):
        raise PermissionError(13, "Permission denied", kwargs["local_dir"])

    monkeypatch.setattr(fineweb, "_hf_hub_download", refused)
    with pytest.raises(fineweb.HubUnreachable, match=r"could not reach huggingface.co \(ConnectionRefused"):
        fineweb.download(tmp_path, 0)
    monkeypatch.setattr(fineweb, "_hf_hub_download", broken)
    with pytest.raises(PermissionError):  # a local problem is not reported as an unreachable hub
        fineweb.download(tmp_path, 0)


def test_tokenize_with_real_gpt2_matches_tiktoken(tmp_path):
    from data.tokenizer import ranks_candidates

    path = next((p for p in ranks_candidates() if p.is_file()), None)
    if path is None:
        pytest.skip("GPT-2 BPE ranks not available offline (run `python -m data.tokenizer` once)")
    texts = _texts(40, seed=5) + ["Hello world, the quick brown fox.", "<|endoftext|> is plain text here"]
    src = _parquet(tmp_path / "a.parquet", texts)
    fineweb.main(["tokenize", "--out", str(tmp_path / "out"), "--files", src, "--workers", "1",
                  "--shard-tokens", "200", "--min-split-tokens", "200"])
    enc = encoding_from_ranks(path)
    ref = np.concatenate([[EOT] + enc.encode_ordinary(t) for t in texts])
    assert np.array_equal(_all_tokens(tmp_path / "out")[1], ref)
    assert ref.max() == EOT and (ref == EOT).sum() == len(texts)  # special text is not a special token


def test_tokenize_never_writes_an_empty_split(tmp_path, ranks, capsys):
    texts = _texts(30, seed=3)
    src = _parquet(tmp_path / "a.parquet", texts)
    total = len(_reference(texts, ranks))
    kw = dict(ranks_path=ranks[0], ranks_sha256=ranks[1])
    out = tmp_path / "out"
    # the default --shard-tokens is larger than the text: everything would be validation
    with pytest.raises(ValueError, match=rf"holds {total:,} tokens: shard 0 \(fineweb_val_000000\.bin, the "
                                         rf"validation split\) would take {total:,}.* leave 0 for the train "
                                         r"split.*Nothing was written.*python -m data\.text"):
        fineweb.tokenize(out, "files", [src], 100_000_000, 1, **kw)
    assert not out.exists()
    # shard 0 fills, but fewer than --min-split-tokens follow it: still nothing written
    with pytest.raises(ValueError, match=rf"would take {total - 100:,}.* leave 100 for the train split, but "
                                         rf"each split needs at least 101.*from 101 to {total - 101:,}"):
        fineweb.tokenize(out, "files", [src], total - 100, 1, min_split_tokens=101, **kw)
    assert not out.exists()
    with pytest.raises(ValueError, match=r"--shard-tokens 100 is below --min-split-tokens 2,049"):
        fineweb.tokenize(out, "files", [src], 100, 1, **kw)
    # exactly enough: both splits written, and the tokens are the same as with any other cut
    paths = fineweb.tokenize(out, "files", [src], total - 100, 1, min_split_tokens=100, **kw)
    assert [p.name for p in paths] == ["fineweb_val_000000.bin", "fineweb_train_000001.bin"]
    assert [len(read_shard(p)) for p in paths] == [total - 100, 100]
    assert np.array_equal(_all_tokens(out)[1], _reference(texts, ranks))
    (tmp_path / "plain.txt").write_text(texts[0])
    with pytest.raises(ValueError, match="leave 0 for the train split"):
        fineweb.main(["tokenize", "--out", str(tmp_path / "o2"), "--files", str(tmp_path / "plain.txt"),
                      "--workers", "1", "--bpe-ranks", ranks[0], "--bpe-sha256", ranks[1]])
    assert "tip: for plain text files, `python -m data.text" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
