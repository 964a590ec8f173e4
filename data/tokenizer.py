"""The GPT-2 tokenizer (tiktoken), obtainable without tiktoken's own download host.

``get_gpt2_encoding()`` tries, in order:

1. ``tiktoken.get_encoding("gpt2")`` if tiktoken's cache already holds its files (no network is tried);
2. a local copy of the GPT-2 BPE ranks file (``gpt2.tiktoken`` = tiktoken's ``r50k_base`` ranks), checked
   against its sha256: ``$GPT2_BPE_RANKS``, else ``data_cache/gpt2.tiktoken`` in the repository, else the
   copy inside an installed ``openai-whisper`` package;
3. otherwise it fails, naming the one command that fetches the ranks from the package registry::

       python -m data.tokenizer        # pip download --no-deps openai-whisper==20250625, extract, verify
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import tiktoken

GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
WHISPER_SDIST = "openai-whisper==20250625"  # its sdist ships whisper/assets/gpt2.tiktoken (MIT)
WHISPER_SDIST_SHA256 = "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"
WHISPER_MEMBER = "openai_whisper-20250625/whisper/assets/gpt2.tiktoken"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RANKS_PATH = REPO_ROOT / "data_cache" / "gpt2.tiktoken"
EOT_TOKEN = "<|endoftext|>"
FETCH_COMMAND = "python -m data.tokenizer"


class _NoNetwork(RuntimeError):
    pass


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encoding_from_ranks(path, expected_sha256: str | None = GPT2_RANKS_SHA256, name: str = "gpt2",
                        eot_id: int = 50256) -> tiktoken.Encoding:
    """A GPT-2-style ``tiktoken.Encoding`` (GPT-2 split pattern, ``<|endoftext|>`` = ``eot_id``) from a
    ``.tiktoken`` ranks file (lines ``base64(token) rank``), after checking its sha256."""
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str

    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise ValueError(
            f"{path}: sha256 {sha256_file(path)} is not the expected {expected_sha256}; delete it and run "
            f"`{FETCH_COMMAND}`"
        )
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local file directly, do not copy it into a cache
    try:
        ranks = load_tiktoken_bpe(str(path))
    finally:
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old
    return tiktoken.Encoding(name=name, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={EOT_TOKEN: eot_id})


def _tiktoken_cached_gpt2() -> tiktoken.Encoding | None:
    """``tiktoken.get_encoding("gpt2")`` only if it needs no download (its remote fetch is disabled)."""
    import tiktoken.load as tl

    fetch = getattr(tl, "read_file", None)
    if fetch is None:
        return None

    def offline(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise _NoNetwork(blobpath)
        return fetch(blobpath)

    tl.read_file = offline
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception:
        return None
    finally:
        tl.read_file = fetch


def ranks_candidates() -> list[Path]:
    """Where a local GPT-2 ranks file is looked for, in order."""
    out = []
    if os.environ.get("GPT2_BPE_RANKS"):
        out.append(Path(os.environ["GPT2_BPE_RANKS"]))
    out.append(DEFAULT_RANKS_PATH)
    spec = importlib.util.find_spec("whisper")  # does not import it
    if spec is not None and spec.submodule_search_locations:
        out.append(Path(list(spec.submodule_search_locations)[0]) / "assets" / "gpt2.tiktoken")
    return out


@functools.lru_cache(maxsize=1)
def get_gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 encoding (n_vocab 50257, ``<|endoftext|>`` = 50256), found offline; see the module doc."""
    enc = _tiktoken_cached_gpt2()
    if enc is not None:
        return enc
    tried = []
    for path in ranks_candidates():
        if path.is_file():
            return encoding_from_ranks(path)  # raises on a wrong sha256: never use a bad copy silently
        tried.append(str(path))
    raise RuntimeError(
        "GPT-2 BPE ranks not found: tiktoken's cache has no 'gpt2' files and there is no local copy at "
        f"{', '.join(tried)}. Fetch a verified copy (from the package registry) with: `{FETCH_COMMAND}` "
        f"(or point GPT2_BPE_RANKS at a gpt2.tiktoken file with sha256 {GPT2_RANKS_SHA256})"
    )


def extract_ranks(sdist, dest=DEFAULT_RANKS_PATH, member: str = WHISPER_MEMBER,
                  expected_sha256: str = GPT2_RANKS_SHA256) -> Path:
    """Copy ``member`` out of the sdist tarball to ``dest`` (atomically) after checking its sha256."""
    dest = Path(dest)
    with tarfile.open(sdist, "r:gz") as tar:
        data = tar.extractfile(member).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise ValueError(f"{sdist}: {member} has sha256 {digest}, expected {expected_sha256}; refusing it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def pip_download(requirement: str, dest_dir, expected_sha256: str | None = None) -> Path:
    """``pip download --no-deps`` one sdist into ``dest_dir``; return the archive path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    found = [p for p in dest_dir.glob("*.tar.gz") if p.name.lower().replace("-", "_").startswith(name)]
    if not (found and (expected_sha256 is None or sha256_file(found[0]) == expected_sha256)):
        for p in found:
            p.unlink()
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
               "-d", str(dest_dir), requirement]
        subprocess.run(cmd, check=True)
        found = [p for p in dest_dir.glob("*.tar.gz") if p.name.lower().replace("-", "_").startswith(name)]
    if not found:
        raise RuntimeError(f"pip download {requirement} produced no sdist in {dest_dir}")
    if expected_sha256 is not None and sha256_file(found[0]) != expected_sha256:
        raise ValueError(f"{found[0]}: sha256 {sha256_file(found[0])} is not the pinned {expected_sha256}")
    return found[0]


def fetch_gpt2_ranks(dest=DEFAULT_RANKS_PATH, sdist=None) -> Path:
    """Make ``dest`` a verified GPT-2 ranks file (from ``sdist`` if given, else via ``pip download``)."""
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == GPT2_RANKS_SHA256:
        return dest
    if sdist is not None:
        return extract_ranks(sdist, dest)
    with tempfile.TemporaryDirectory() as tmp:
        return extract_ranks(pip_download(WHISPER_SDIST, tmp, WHISPER_SDIST_SHA256), dest)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog=FETCH_COMMAND,
        description=f"Fetch the GPT-2 BPE ranks from the {WHISPER_SDIST} sdist, verify and store them.",
    )
    ap.add_argument("--out", default=str(DEFAULT_RANKS_PATH), help="where to write gpt2.tiktoken")
    ap.add_argument("--sdist", help="use an already downloaded openai-whisper sdist instead of pip download")
    a = ap.parse_args(argv)
    path = fetch_gpt2_ranks(a.out, a.sdist)
    print(f"{path}: GPT-2 BPE ranks, sha256 {GPT2_RANKS_SHA256} verified")
    if Path(a.out).resolve() != DEFAULT_RANKS_PATH.resolve():
        print(f"export GPT2_BPE_RANKS={path}  # so that get_gpt2_encoding() finds it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

