"""The GPT-2 tokenizer (tiktoken), obtainable without tiktoken's own download host.

``get_gpt2_encoding()`` is the one way every command gets it. It tries, in order:

1. ``tiktoken.get_encoding("gpt2")`` if tiktoken's cache already holds its files (no network is tried);
2. a local copy of the GPT-2 BPE ranks file (``gpt2.tiktoken`` = tiktoken's ``r50k_base`` ranks), checked
   against its sha256: ``$GPT2_BPE_RANKS`` when set (then only there), else ``data_cache/gpt2.tiktoken`` in
   the repository, else the copy inside an installed ``openai-whisper`` package;
3. otherwise it fetches the ranks from the package registry, once (``pip download --no-deps`` of the
   ``openai-whisper`` sdist, extracted and verified), into ``$GPT2_BPE_RANKS`` or
   ``data_cache/gpt2.tiktoken``. Without a registry it raises ``TokenizerUnavailable``, whose message
   says how to supply a copy by hand.

``python -m data.tokenizer`` runs step 3 alone (``--sdist`` takes an sdist downloaded elsewhere).
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
WHISPER_VERSION = "20250625"  # its sdist ships whisper/assets/gpt2.tiktoken (MIT)
WHISPER_SDIST = f"openai-whisper=={WHISPER_VERSION}"
WHISPER_SDIST_SHA256 = "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"
WHISPER_ARCHIVE = f"openai_whisper-{WHISPER_VERSION}.tar.gz"
WHISPER_MEMBER = f"openai_whisper-{WHISPER_VERSION}/whisper/assets/gpt2.tiktoken"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RANKS_IN_REPO = Path("data_cache") / "gpt2.tiktoken"
DEFAULT_RANKS_PATH = REPO_ROOT / DEFAULT_RANKS_IN_REPO
EOT_TOKEN = "<|endoftext|>"
FETCH_COMMAND = "python -m data.tokenizer"


class _NoNetwork(RuntimeError):
    pass


class FetchError(RuntimeError):
    """``pip download`` of a pinned sdist failed (no registry, no pip); the message names the command."""


class TokenizerUnavailable(FetchError):
    """The GPT-2 ranks are not on this machine and could not be fetched; the message says how to fix it."""


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
    """Where a local GPT-2 ranks file is looked for, in order: ``$GPT2_BPE_RANKS`` alone when it is set,
    else ``data_cache/gpt2.tiktoken``, then an installed ``openai-whisper``'s copy."""
    if os.environ.get("GPT2_BPE_RANKS"):
        return [Path(os.environ["GPT2_BPE_RANKS"])]
    out = [DEFAULT_RANKS_PATH]
    spec = importlib.util.find_spec("whisper")  # does not import it
    if spec is not None and spec.submodule_search_locations:
        out.append(Path(list(spec.submodule_search_locations)[0]) / "assets" / "gpt2.tiktoken")
    return out


def ranks_destination() -> Path:
    """Where a fetched ranks file goes: ``$GPT2_BPE_RANKS`` when set, else ``data_cache/gpt2.tiktoken``."""
    return Path(os.environ["GPT2_BPE_RANKS"]) if os.environ.get("GPT2_BPE_RANKS") else DEFAULT_RANKS_PATH


def local_gpt2_encoding() -> tiktoken.Encoding | None:
    """The GPT-2 encoding from tiktoken's cache or a local ranks file (steps 1-2 of the module doc), or None.
    A local copy with a wrong sha256 raises ``ValueError``: a bad copy is never used silently."""
    enc = _tiktoken_cached_gpt2()
    if enc is not None:
        return enc
    for path in ranks_candidates():
        if path.is_file():
            return encoding_from_ranks(path)
    return None


@functools.lru_cache(maxsize=1)
def get_gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 encoding (n_vocab 50257, ``<|endoftext|>`` = 50256): found locally, else fetched once from
    the package registry (progress on stderr); ``TokenizerUnavailable`` when neither works."""
    enc = local_gpt2_encoding()
    if enc is not None:
        return enc
    dest = ranks_destination()
    print(f"GPT-2 BPE ranks not found locally ({', '.join(map(str, ranks_candidates()))}); fetching them "
          f"once from the package registry ({WHISPER_SDIST}) into {dest}", file=sys.stderr)
    try:
        return encoding_from_ranks(fetch_gpt2_ranks(dest))
    except FetchError as e:
        raise TokenizerUnavailable(
            f"GPT-2 BPE ranks not found and not fetchable: {e}. Fix, on a machine without the registry: copy "
            f"gpt2.tiktoken (sha256 {GPT2_RANKS_SHA256}) from one that has it (`{FETCH_COMMAND}` writes "
            f"{DEFAULT_RANKS_IN_REPO}) to {dest}, or point GPT2_BPE_RANKS at it, or run "
            f"`{FETCH_COMMAND} --sdist {WHISPER_ARCHIVE}` with the sdist downloaded elsewhere"
        ) from e


def extract_ranks(sdist, dest, member: str = WHISPER_MEMBER,
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


def _sdists(dest_dir: Path, name: str) -> list[Path]:
    return [p for p in dest_dir.glob("*.tar.gz") if p.name.lower().replace("-", "_").startswith(name)]


def pip_download(requirement: str, dest_dir, expected_sha256: str | None = None) -> Path:
    """``pip download --no-deps`` one sdist into ``dest_dir`` (kept if already there and valid); return the
    archive path. ``FetchError`` when pip fails (no registry, no pip); its own messages go to stderr."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    found = _sdists(dest_dir, name)
    if not (found and (expected_sha256 is None or sha256_file(found[0]) == expected_sha256)):
        for p in found:
            p.unlink()
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest_dir), requirement]
        try:
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            why = f"exit code {e.returncode}" if isinstance(e, subprocess.CalledProcessError) else str(e)
            raise FetchError(f"`pip download --no-deps {requirement}` failed ({why}; pip's own message is "
                             f"above: is the package registry reachable?)") from e
        found = _sdists(dest_dir, name)
    if not found:
        raise FetchError(f"pip download {requirement} produced no sdist in {dest_dir}")
    if expected_sha256 is not None and sha256_file(found[0]) != expected_sha256:
        raise ValueError(f"{found[0]}: sha256 {sha256_file(found[0])} is not the pinned {expected_sha256}")
    return found[0]


def fetch_gpt2_ranks(dest=None, sdist=None) -> Path:
    """Make ``dest`` (default ``ranks_destination()``) a verified GPT-2 ranks file, from ``sdist`` if given,
    else via ``pip download`` (``FetchError`` when that fails)."""
    dest = Path(dest) if dest is not None else ranks_destination()
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
    ap.add_argument("--out", default=None,
                    help=f"where to write gpt2.tiktoken (default: $GPT2_BPE_RANKS, else "
                         f"{DEFAULT_RANKS_IN_REPO})")
    ap.add_argument("--sdist", help="use an already downloaded openai-whisper sdist instead of pip download")
    a = ap.parse_args(argv)
    try:
        path = fetch_gpt2_ranks(a.out, a.sdist)
    except FetchError as e:
        print(f"{FETCH_COMMAND}: error: {e}; or pass --sdist {WHISPER_ARCHIVE} downloaded elsewhere",
              file=sys.stderr)
        return 2
    print(f"{path}: GPT-2 BPE ranks, sha256 {GPT2_RANKS_SHA256} verified")
    if path.resolve() != ranks_destination().resolve():
        print(f"export GPT2_BPE_RANKS={path}  # so that get_gpt2_encoding() finds it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

