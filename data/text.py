"""Train and validation shards from your own text files, in one command.

    python -m data.text --out data_cache/mytext --tokenizer gpt2 --val-fraction 0.1 notes/ book.txt
    python -m data.text --out data_cache/mytext --tokenizer bytes --val-files held_out.txt train/

Inputs are files (taken as given, whatever their name) and directories, walked recursively in sorted
order for ``*.txt``, ``*.md`` and ``*.text`` (case-insensitive; ``--glob '*'`` takes every file; hidden
files and folders and anything inside ``--out`` are skipped). Each file is one document, in input order.

Tokenizers (``--tokenizer``):

* ``gpt2``: the GPT-2 BPE (``data.tokenizer``; its ranks are fetched once if missing); every document is
  ``[<|endoftext|>] + encode_ordinary(text)`` as in the other corpora (the text ``<|endoftext|>`` inside a
  file stays plain text). Train with the default ``model.vocab_size`` (50304).
* ``bytes``: one token per byte of the UTF-8 text, a vocabulary of 256 (``model.vocab_size=256``). Every
  document is preceded by the separator byte 255 (0xFF): a byte that never occurs in UTF-8, so the
  separator is unambiguous and decoding is exact, and it sits at the top of the vocabulary like GPT-2's
  ``<|endoftext|>`` (50256) and ``data.synthetic``'s ``vocab_size - 1``. The model thus sees where one
  document ends and the next begins, at one token per document.

Files that are not valid UTF-8 are decoded with ``errors="replace"`` (each undecodable byte becomes U+FFFD)
by both tokenizers; the tool names them on stderr. Everything else round-trips exactly: decoding the
shards (``decode_documents``) gives back the files' text.

Splits: ``--val-fraction F`` sends the last ``F`` of the whole token stream (all documents concatenated
in input order) to validation, so validation is one contiguous stretch of text that training never
sees (only the document at the cut is shared, its head in train and its tail in validation);
``--val-files`` names validation files or folders instead (how it reads its argument: ``VAL_FILES_HELP``),
and the positional inputs, before, between or after the options, are all train. A file that both splits
hold (inside an input folder, or named twice) goes to validation only, with a note. Neither split may be
smaller than ``--min-split-tokens`` (default ``data.shards.min_split_tokens(--seq-len)``): otherwise the
tool stops before writing anything, naming the counts and the fix.

Output, in ``--out``: ``<prefix>_train_%06d.bin`` and ``<prefix>_val_%06d.bin`` from 0 (``--prefix``
default ``text``), at most ``--shard-tokens`` tokens each, in the format of ``data.shards``. Existing
shards of that prefix are never overwritten without ``--force`` (which deletes them all first, so no
stale shard is left to match the glob). Progress goes to stderr; stdout gets exactly one line, the
overrides to train on the result::

    data.name=text data.train_files=DIR/text_train_*.bin data.val_files=DIR/text_val_*.bin
        data.seq_len=1024 data.val_tokens=N [model.vocab_size=256]      (all on one line)

``data.val_tokens`` is every whole validation sequence of ``data.seq_len`` tokens (one more token is kept
for the last target), rounded down to a multiple of 16 sequences (or to a power of two when fewer than 16
fit) so that micro-batches of up to 16 sequences divide it; on N processes it must also divide by N (the
trainer names the valid values). ``data.seq_len`` is ``--seq-len``, or a smaller power of two when a split
holds fewer than ``--seq-len + 1`` tokens (possible only with a lowered ``--min-split-tokens``); the line
always states it because ``data.val_tokens`` is counted in its sequences. ``data.name`` labels the runs
and keeps the trainer from writing synthetic shards on demand (it does so for ``data.name=synthetic``).

The whole token stream is held in memory (2 bytes a token) so that the split can be checked before any
file is written; for corpora beyond a few GB use ``python -m data.fineweb tokenize``.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data import shards
from data.shards import EOT, find_shards, shard_name, write_shard

PROG = "python -m data.text"
DEFAULT_GLOBS = ("*.txt", "*.md", "*.text")
DEFAULT_SEQ_LEN = shards.SEQ_LEN
DEFAULT_SHARD_TOKENS = shards.SHARD_TOKENS
BYTE_SEP = 255  # document separator of the bytes tokenizer: never a byte of UTF-8 text
VAL_SEQS_MULTIPLE = 16  # data.val_tokens is a whole number of these many sequences (when there are enough)
MAX_SHARD_TOKENS = 2**31 - 1  # the shard header's int32 count
VAL_FILES_HELP = (
    "validation files or folders; the option takes one argument, so in `--val-files v.txt a.txt b/` v.txt "
    "is validation and a.txt and b/ are train. Name several by repeating it (--val-files v1.txt "
    "--val-files v2.txt) or with commas (--val-files v1.txt,v2.txt; a name that exists as a whole is taken "
    "whole, commas and all)"
)


class TextError(ValueError):
    """Bad input or arguments for ``python -m data.text``; the message says how to fix it."""


def val_file_names(value: str) -> list[str]:
    """The names in one ``--val-files`` argument: ``value`` itself when it names an existing path (a
    file name may hold a comma), else its comma-separated parts, none of them empty."""
    if value and Path(value).exists():  # Path("") would be the current folder
        return [value]
    parts = value.split(",")
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"empty name in {value!r}: separate validation files with single commas "
            f"(--val-files v1.txt,v2.txt) or repeat the option (--val-files v1.txt --val-files v2.txt)")
    return parts


# ---------------------------------------------------------------------------------------- inputs
def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def collect_files(inputs, globs=DEFAULT_GLOBS, exclude: Path | None = None,
                  what: str = "input") -> list[Path]:
    """Files named in ``inputs`` (as given) plus those under its directories matching ``globs``
    (case-insensitive, sorted, hidden entries and anything under ``exclude`` skipped); repeats dropped."""
    exclude = exclude.resolve() if exclude is not None else None
    pats = [g.lower() for g in globs]
    missing, empty_dirs, out, seen, repeats = [], [], [], set(), []
    for item in map(Path, inputs):
        if item.is_file():
            found = [item]
        elif item.is_dir():
            found = sorted(
                p for p in item.rglob("*")
                if p.is_file() and not _hidden(p, item) and not _inside(p.resolve(), exclude)
                and any(fnmatch.fnmatchcase(p.name.lower(), g) for g in pats)
            )
            if not found:
                empty_dirs.append(str(item))
        else:
            missing.append(str(item))
            continue
        for p in found:
            key = p.resolve()
            if key in seen:
                repeats.append(str(p))
                continue
            seen.add(key)
            out.append(p)
    if missing:
        raise TextError(
            f"{what} path(s) not found: {', '.join(missing)}. Check the spelling, or run from the folder the "
            f"paths are relative to"
        )
    if empty_dirs:
        raise TextError(
            f"{what} folder(s) {', '.join(empty_dirs)} hold no file matching {' '.join(globs)} (hidden files "
            f"and --out are skipped); pass the files themselves, or choose which files a folder contributes "
            f"with --glob (e.g. --glob '*.rst', or --glob '*' for every file)"
        )
    if repeats:
        _note(f"{len(repeats)} {what} file(s) named more than once were taken once: {_few(repeats)}")
    return out


def _few(items, n: int = 5) -> str:
    items = list(items)
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def _note(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------- tokenizers
@dataclass
class Tokenizer:
    """``encode(bytes) -> (uint16 tokens of one document, separator first; bad UTF-8 offset or -1)``."""

    name: str
    vocab_size: int
    sep: int
    enc: object = field(default=None, repr=False)

    def encode(self, data: bytes) -> tuple[np.ndarray, int]:
        try:
            text = data.decode("utf-8")
            bad = -1
        except UnicodeDecodeError as e:
            text = data.decode("utf-8", errors="replace")
            bad = e.start
        if self.name == "bytes":
            raw = data if bad < 0 else text.encode("utf-8")
            toks = np.empty(len(raw) + 1, dtype=np.uint16)
            toks[0] = self.sep
            toks[1:] = np.frombuffer(raw, dtype=np.uint8)
        else:
            ids = self.enc.encode_ordinary(text)
            toks = np.empty(len(ids) + 1, dtype=np.uint16)
            toks[0] = self.sep
            toks[1:] = ids
        return toks, bad

    def decode(self, tokens) -> str:
        """The text of tokens that hold no separator."""
        tokens = np.asarray(tokens)
        if self.name == "bytes":
            return tokens.astype(np.uint8).tobytes().decode("utf-8")
        return self.enc.decode(tokens.tolist())


def get_tokenizer(name: str) -> Tokenizer:
    if name == "bytes":
        return Tokenizer("bytes", 256, BYTE_SEP)
    if name == "gpt2":
        from data.tokenizer import get_gpt2_encoding

        try:
            enc = get_gpt2_encoding()
        except RuntimeError as e:
            raise TextError(f"--tokenizer gpt2: {e}; or use --tokenizer bytes, which needs no file") from e
        return Tokenizer("gpt2", enc.n_vocab, EOT, enc)
    raise TextError(f"--tokenizer must be 'gpt2' or 'bytes', got {name!r}")


def decode_documents(tokens, tokenizer: Tokenizer | str) -> list[str]:
    """The documents of a token stream (e.g. a train shard followed by the val shards) as text: the
    stream is cut at every separator token (the first document must start with one)."""
    tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    tokens = np.asarray(tokens)
    starts = np.flatnonzero(tokens == tok.sep)
    if len(tokens) and (len(starts) == 0 or starts[0] != 0):
        raise ValueError(f"the stream does not start with the separator token {tok.sep}")
    bounds = list(starts) + [len(tokens)]
    return [tok.decode(tokens[a + 1 : b]) for a, b in zip(bounds[:-1], bounds[1:])]


def tokenize_files(paths: list[Path], tok: Tokenizer, desc: str, threads: int | None = None):
    """(one token array per file, [(file, offset of its first undecodable byte)]), with a tqdm bar over
    the bytes read on stderr."""
    sizes = [p.stat().st_size for p in paths]
    threads = threads or max(1, min(8, os.cpu_count() or 1))

    def one(p: Path):
        return tok.encode(p.read_bytes())

    docs, bad = [], []
    with tqdm(total=sum(sizes), desc=desc, unit="B", unit_scale=True, file=sys.stderr) as bar, \
            ThreadPoolExecutor(threads) as pool:
        for p, size, (toks, offset) in zip(paths, sizes, pool.map(one, paths)):  # in input order
            docs.append(toks)
            if offset >= 0:
                bad.append((p, offset))
            bar.update(size)
    return docs, bad


# ---------------------------------------------------------------------------------------- splits
def val_fraction_cut(n_tokens: int, fraction: float) -> int:
    """Tokens that go to validation: the last ``round(n * fraction)`` of the stream."""
    return int(round(n_tokens * fraction))


def _fraction_range(n: int, need: int) -> tuple[float, float] | None:
    """The --val-fraction values (3 decimals) that leave both splits ``need`` tokens, or None."""
    if n < 2 * need:
        return None
    lo, hi = math.ceil(need / n * 1000) / 1000, math.floor((n - need) / n * 1000) / 1000
    return (lo, hi) if 0 < lo <= hi < 1 else None


def check_splits(n_train: int, n_val: int, need: int, how: str, fraction: float | None = None) -> None:
    """Raise ``TextError`` unless both splits hold at least ``need`` tokens."""
    if n_train >= need and n_val >= need:
        return
    short = [f"{name} {n:,}" for name, n in (("train", n_train), ("validation", n_val)) if n < need]
    fixes = ["add more text"]
    if fraction is not None:
        rng = _fraction_range(n_train + n_val, need)
        if rng is None:
            fixes[0] = (f"add more text ({2 * need:,} tokens in all at the least; the input has "
                        f"{n_train + n_val:,})")
        else:
            fixes.append(f"choose another --val-fraction (any from {rng[0]} to {rng[1]} works)")
        fixes.append("name validation files with --val-files")
    else:
        fixes.append("move files from the larger split to the smaller one, or pass all files as inputs with "
                     "--val-fraction 0.1")
    fixes.append("lower --seq-len / --min-split-tokens")
    raise TextError(
        f"the splits would hold {n_train:,} train and {n_val:,} validation tokens ({how}), but each needs at "
        f"least {need:,} (--min-split-tokens; default 2 x --seq-len + 1); too small: {', '.join(short)}. "
        f"Nothing was written. Fix: {'; or '.join(fixes)}"
    )


def loader_settings(n_train: int, n_val: int, seq_len: int) -> tuple[int, int]:
    """(data.seq_len, data.val_tokens) that the trainer accepts for splits of these sizes."""
    shortest = min(n_train, n_val)
    if shortest < seq_len + 1:  # a split shorter than one window: a power of two that fits
        seq_len = 1 << ((shortest - 1).bit_length() - 1)
    seqs = (n_val - 1) // seq_len
    step = VAL_SEQS_MULTIPLE if seqs >= VAL_SEQS_MULTIPLE else 1 << (seqs.bit_length() - 1)
    return seq_len, seqs // step * step * seq_len


# ---------------------------------------------------------------------------------------- outputs
def existing_shards(out: Path, prefix: str) -> list[Path]:
    """Shards (and partial ``.tmp`` files) of ``prefix`` in ``out``."""
    found = []
    for split in ("train", "val"):
        found += find_shards(out / f"{prefix}_{split}_*.bin")
        found += [Path(p) for p in sorted(out.glob(f"{prefix}_{split}_*.bin.tmp"))]
    return found


def shard_plan(out: Path, prefix: str, split: str, n: int, shard_tokens: int) -> list[tuple[Path, int, int]]:
    """[(path, start, stop)] of the shards of a split of ``n`` tokens."""
    return [(out / shard_name(prefix, split, i), a, min(a + shard_tokens, n))
            for i, a in enumerate(range(0, n, shard_tokens))]


def overrides_line(out: Path, prefix: str, tok: Tokenizer, seq_len: int, val_tokens: int) -> str:
    parts = [f"data.name={prefix}",
             f"data.train_files={out / f'{prefix}_train_*.bin'}",
             f"data.val_files={out / f'{prefix}_val_*.bin'}",
             f"data.seq_len={seq_len}",
             f"data.val_tokens={val_tokens}"]
    if tok.name == "bytes":
        parts.append(f"model.vocab_size={tok.vocab_size}")
    return " ".join(parts)


# a CPU-sized global batch for the line above (with --seq-len 256; its measured step time: docs/data.md,
# "Your own text")
CPU_BATCH = "batch.global_seqs=16"


def input_files(inputs, val_files, globs, out: Path, by_fraction: bool) -> tuple[list[Path], list[Path]]:
    """The train and validation files: a --val-files file that the train inputs also hold (inside an input
    folder, or named twice) is held out of training, with a note; which files went where is noted; empty
    files are skipped."""
    what = "input" if by_fraction else "train"
    train_paths = collect_files(inputs, globs, exclude=out, what=what)
    val_paths = collect_files(val_files, globs, exclude=out, what="validation") if val_files else []
    train_keys = {p.resolve() for p in train_paths}
    both = [p for p in val_paths if p.resolve() in train_keys]
    if both:  # --val-files wins: a file named for validation is held out of the train inputs
        held = {p.resolve() for p in both}
        train_paths = [p for p in train_paths if p.resolve() not in held]
        if not train_paths:
            raise TextError("every train input is also a --val-files file: nothing is left to train on; "
                            "pass more train files or folders")
        _note(f"held out of training: {len(both)} file(s) that --val-files names and the train inputs also "
              f"hold ({_few(both)})")

    empty = [p for p in train_paths + val_paths if p.stat().st_size == 0]
    if len(empty) == len(train_paths) + len(val_paths):
        raise TextError(f"all {len(empty)} input file(s) are empty ({_few(empty)}); nothing to tokenize: "
                        f"pass files that hold text")
    if empty:
        _note(f"skipped {len(empty)} empty file(s): {_few(empty)}")
        train_paths = [p for p in train_paths if p not in empty]
        val_paths = [p for p in val_paths if p not in empty]
    if val_paths:
        _note(f"train: {len(train_paths)} file(s) ({_few(train_paths)}); validation: {len(val_paths)} "
              f"file(s) ({_few(val_paths)})")
    return train_paths, val_paths


# ---------------------------------------------------------------------------------------- build
def build(out, inputs, tokenizer: str, val_fraction: float | None = None, val_files=None,
          prefix: str = "text", shard_tokens: int = DEFAULT_SHARD_TOKENS, seq_len: int = DEFAULT_SEQ_LEN,
          min_split_tokens: int | None = None, globs=DEFAULT_GLOBS, force: bool = False) -> dict:
    """Write the shards; return ``{"line", "train", "val", "train_tokens", "val_tokens", "seq_len",
    "val_tokens_setting"}``. Every check (arguments, inputs, existing shards, split sizes) runs before
    anything is written; a failed one raises ``TextError``."""
    # ---- arguments
    if (val_fraction is None) == (not val_files):
        raise TextError("give exactly one of --val-fraction F (e.g. 0.1) or --val-files FILE...")
    if val_fraction is not None and not (0.0 < val_fraction < 1.0):
        raise TextError(f"--val-fraction must lie strictly between 0 and 1, got {val_fraction}; e.g. 0.1 "
                        f"sends the last tenth of the text to validation")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise TextError(f"--seq-len must be a positive integer, got {seq_len!r} (the trainer's default is "
                        f"{DEFAULT_SEQ_LEN})")
    need = shards.min_split_tokens(seq_len) if min_split_tokens is None else min_split_tokens
    if not isinstance(need, int) or need < 2:
        raise TextError(f"--min-split-tokens must be an integer >= 2 (a split needs one input and one target "
                        f"token), got {need!r}")
    if not isinstance(shard_tokens, int) or not 1 <= shard_tokens <= MAX_SHARD_TOKENS:
        raise TextError(f"--shard-tokens must be in 1..{MAX_SHARD_TOKENS:,} (the header's int32 count), got "
                        f"{shard_tokens!r}; e.g. {DEFAULT_SHARD_TOKENS:,}")
    if not prefix or any(c in prefix for c in "/\\*?[]") or "_train_" in prefix or "_val_" in prefix:
        raise TextError(f"--prefix must be a plain file-name part without '/', wildcards, '_train_' or "
                        f"'_val_', got {prefix!r}; e.g. text")
    if not inputs:
        raise TextError(f"no input files or folders given: pass text files and/or folders of *.txt/*.md as "
                        f"positional arguments (--val-files: {VAL_FILES_HELP})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TextError(f"--out {out} exists and is not a folder; choose a folder for the shards")

    # ---- inputs
    train_paths, val_paths = input_files(inputs, val_files, globs, out, val_fraction is not None)

    # ---- existing shards
    old = existing_shards(out, prefix) if out.is_dir() else []
    if old and not force:
        raise TextError(
            f"{out} already holds shards with prefix {prefix!r}: {_few(p.name for p in old)}; pass --force "
            f"to replace them (all of them are deleted first), or choose another --out or --prefix"
        )

    # ---- tokenize (in memory)
    tok = get_tokenizer(tokenizer)
    train_docs, bad = tokenize_files(train_paths, tok, f"{tokenizer} tokens ({len(train_paths)} files)")
    val_docs, vbad = [], []
    if val_paths:
        val_docs, vbad = tokenize_files(val_paths, tok, f"{tokenizer} tokens (validation, "
                                                       f"{len(val_paths)} files)")
    bad += vbad
    if bad:
        _note(f"{len(bad)} file(s) are not valid UTF-8; each undecodable byte became U+FFFD "
              f"(errors='replace'), so they will not decode back byte for byte: "
              f"{_few(f'{p} (first bad byte at offset {o})' for p, o in bad)}. Convert them to UTF-8 to keep "
              f"those characters (e.g. iconv -f latin1 -t utf-8)")

    # ---- split
    if val_fraction is not None:
        stream = np.concatenate(train_docs) if train_docs else np.zeros(0, np.uint16)
        n_val = val_fraction_cut(len(stream), val_fraction)
        check_splits(len(stream) - n_val, n_val, need,
                     f"--val-fraction {val_fraction} of {len(stream):,} {tokenizer} tokens from "
                     f"{len(train_docs)} file(s)", fraction=val_fraction)
        train, val = stream[: len(stream) - n_val], stream[len(stream) - n_val :]
    else:
        train = np.concatenate(train_docs) if train_docs else np.zeros(0, np.uint16)
        val = np.concatenate(val_docs) if val_docs else np.zeros(0, np.uint16)
        check_splits(len(train), len(val), need,
                     f"{tokenizer} tokens of {len(train_docs)} train and {len(val_docs)} validation file(s)")
    del train_docs, val_docs
    out_seq_len, val_tokens = loader_settings(len(train), len(val), seq_len)
    if out_seq_len != seq_len:
        _note(f"a split is shorter than one sequence of --seq-len {seq_len}: the overrides use "
              f"data.seq_len={out_seq_len}")

    # ---- write
    if old:
        _note(f"--force: deleting {len(old)} old shard(s) in {out}: {_few(p.name for p in old)}")
        for p in old:
            p.unlink()
    written = {}
    for split, toks in (("train", train), ("val", val)):
        written[split] = []
        for path, a, b in shard_plan(out, prefix, split, len(toks), shard_tokens):
            write_shard(path, toks[a:b], vocab_size=tok.vocab_size)
            written[split].append(path)
    line = overrides_line(out, prefix, tok, out_seq_len, val_tokens)
    if any(c.isspace() or c in ",'\"=$()[]{}" for c in str(out)):
        _note(f"the --out path {str(out)!r} holds characters that the shell or Hydra treat specially: quote "
              f"each override of the line below (e.g. 'data.train_files=...') or choose a plainer --out")
    for split, toks in (("train", train), ("val", val)):
        _note(f"{split}: {len(toks):,} tokens in {len(written[split])} shard(s): "
              f"{_few(p.name for p in written[split])}")
    _note(f"wrote {out} ({tokenizer} tokenizer, vocabulary {tok.vocab_size}); train with:\n"
          f"    python train.py {line}\n"
          f"  on a CPU, add a batch that fits it: {CPU_BATCH} (the default, 128 sequences a step, is "
          f"sized for GPUs; docs/data.md, 'Your own text')")
    return {"line": line, "train": written["train"], "val": written["val"], "train_tokens": len(train),
            "val_tokens": len(val), "seq_len": out_seq_len, "val_tokens_setting": val_tokens}


# ---------------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0],
        epilog="Positional inputs may come anywhere. stdout gets one line: the trainer overrides for the "
               "new shards.")
    ap.add_argument("inputs", nargs="*", metavar="FILES_OR_DIRS",
                    help="text files (taken whatever their name) and folders (walked for --glob)")
    ap.add_argument("--out", required=True, help="folder for the shards")
    ap.add_argument("--tokenizer", required=True, choices=["gpt2", "bytes"],
                    help="gpt2: offline GPT-2 BPE (vocab 50257); bytes: UTF-8 bytes (vocab 256, "
                         "separator 255)")
    split = ap.add_mutually_exclusive_group(required=True)
    split.add_argument("--val-fraction", type=float, metavar="F",
                       help="0 < F < 1: the last F of the token stream is validation")
    split.add_argument("--val-files", action="extend", type=val_file_names, metavar="FILE[,FILE...]",
                       help=VAL_FILES_HELP)
    ap.add_argument("--prefix", default="text", help="shard names <prefix>_train_%%06d.bin (default: text)")
    ap.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS,
                    help=f"tokens per shard file (default {DEFAULT_SHARD_TOKENS:,})")
    ap.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN,
                    help=f"the data.seq_len you will train with (default {DEFAULT_SEQ_LEN})")
    ap.add_argument("--min-split-tokens", type=int,
                    help=f"fewest tokens a split may hold (default: two sequences of --seq-len plus the "
                         f"last target, {shards.min_split_tokens(DEFAULT_SEQ_LEN)} at the default --seq-len)")
    ap.add_argument("--glob", action="append", metavar="PATTERN",
                    help="file-name pattern a folder contributes, repeatable (default: *.txt *.md *.text; "
                         "'*' for every file)")
    ap.add_argument("--force", action="store_true", help="delete and replace existing shards of --prefix")
    a = ap.parse_intermixed_args(argv)
    try:
        info = build(a.out, a.inputs, a.tokenizer, a.val_fraction, a.val_files, a.prefix, a.shard_tokens,
                     a.seq_len, a.min_split_tokens, tuple(a.glob) if a.glob else DEFAULT_GLOBS, a.force)
    except TextError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(info["line"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
