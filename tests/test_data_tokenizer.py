"""The GPT-2 tokenizer lookup: local ranks files, sha256 checks, the fetch CLI, the error without any copy."""

import base64
import hashlib
import io
import tarfile

import pytest

from data import tokenizer
from data.tokenizer import (
    GPT2_RANKS_SHA256,
    encoding_from_ranks,
    extract_ranks,
    get_gpt2_encoding,
    ranks_candidates,
)

SMALL_MERGES = [b"th", b"he", b"the", b" t", b"in"]


def write_small_ranks(path):
    """Byte-level ranks (0..255) plus a few merges, in the .tiktoken format; returns its sha256."""
    tokens = [bytes([i]) for i in range(256)] + SMALL_MERGES
    data = "".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(tokens)).encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def real_ranks():
    for p in ranks_candidates():
        if p.is_file():
            return p
    pytest.skip("GPT-2 BPE ranks not available offline (run `python -m data.tokenizer` once)")


def test_small_encoding_from_ranks_file(tmp_path):
    digest = write_small_ranks(tmp_path / "small.tiktoken")
    enc = encoding_from_ranks(tmp_path / "small.tiktoken", digest, name="small")
    assert enc.encode_ordinary("the") == [258]
    assert enc.encode_ordinary(" then") == [32, 258, ord("n")]  # "th" (rank 256) merges before " t"
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert enc.decode(enc.encode_ordinary("héllo, the world")) == "héllo, the world"


def test_wrong_sha256_is_refused(tmp_path):
    write_small_ranks(tmp_path / "gpt2.tiktoken")
    with pytest.raises(ValueError, match="is not the expected 306cd27f.*python -m data.tokenizer"):
        encoding_from_ranks(tmp_path / "gpt2.tiktoken")


def test_env_var_copy_is_checked_and_missing_copy_explains_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenizer, "_tiktoken_cached_gpt2", lambda: None)
    monkeypatch.setattr(tokenizer, "DEFAULT_RANKS_PATH", tmp_path / "absent.tiktoken")
    monkeypatch.setattr(tokenizer.importlib.util, "find_spec", lambda name: None)
    write_small_ranks(tmp_path / "bad.tiktoken")
    monkeypatch.setenv("GPT2_BPE_RANKS", str(tmp_path / "bad.tiktoken"))
    get_gpt2_encoding.cache_clear()
    try:
        with pytest.raises(ValueError, match="sha256"):  # a bad copy is never used silently
            get_gpt2_encoding()
        monkeypatch.delenv("GPT2_BPE_RANKS")
        with pytest.raises(RuntimeError, match=r"GPT-2 BPE ranks not found.*`python -m data.tokenizer`"):
            get_gpt2_encoding()
    finally:
        get_gpt2_encoding.cache_clear()


def _fake_sdist(path, payload: bytes, member=tokenizer.WHISPER_MEMBER):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


def test_extract_ranks_checks_sha256(tmp_path):
    payload = b"not the gpt2 ranks\n"
    _fake_sdist(tmp_path / "w.tar.gz", payload)
    out = extract_ranks(tmp_path / "w.tar.gz", tmp_path / "out.tiktoken",
                        expected_sha256=hashlib.sha256(payload).hexdigest())
    assert out.read_bytes() == payload
    with pytest.raises(ValueError, match="refusing it"):
        extract_ranks(tmp_path / "w.tar.gz", tmp_path / "gpt2.tiktoken")
    assert not (tmp_path / "gpt2.tiktoken").exists()


def test_fetch_cli_refuses_a_bad_sdist(tmp_path):
    _fake_sdist(tmp_path / "w.tar.gz", b"tampered\n")
    with pytest.raises(ValueError, match="refusing it"):
        tokenizer.main(["--sdist", str(tmp_path / "w.tar.gz"), "--out", str(tmp_path / "gpt2.tiktoken")])


def test_fetch_cli_keeps_a_verified_copy(tmp_path, capsys):
    src = real_ranks()
    dest = tmp_path / "gpt2.tiktoken"
    dest.write_bytes(src.read_bytes())
    assert tokenizer.main(["--out", str(dest)]) == 0  # already verified: no download
    assert "verified" in capsys.readouterr().out


def test_real_gpt2_ids(monkeypatch):
    path = real_ranks()
    monkeypatch.setenv("GPT2_BPE_RANKS", str(path))
    get_gpt2_encoding.cache_clear()
    try:
        enc = get_gpt2_encoding()
    finally:
        get_gpt2_encoding.cache_clear()
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    assert enc.encode_ordinary("hello world") == [31373, 995]
    assert enc.encode_ordinary("The quick brown fox.") == [464, 2068, 7586, 21831, 13]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == GPT2_RANKS_SHA256


def test_tiktoken_cache_route_never_downloads(tmp_path, monkeypatch):
    import tiktoken.load

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty cache
    fetch = tiktoken.load.read_file
    assert tokenizer._tiktoken_cached_gpt2() is None  # no network attempt: the remote fetch is disabled
    assert tiktoken.load.read_file is fetch  # and restored afterwards
