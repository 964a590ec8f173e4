"""Token shards: the llm.c / modded-nanogpt binary format, one writer and one validating reader.

Layout of a shard file::

    header   256 x int32 little-endian: [0] = 20240520 (magic), [1] = 1 (version), [2] = n (tokens), rest 0
    tokens   n x uint16 little-endian GPT-2 token ids; every document starts with <|endoftext|> = 50256

File names: ``<prefix>_train_%06d.bin`` and ``<prefix>_val_%06d.bin`` (e.g. ``fineweb_val_000000.bin``).

``read_shard`` memory-maps the tokens and refuses a file with a wrong magic, a wrong version, a truncated
header or body, a count that disagrees with the file size, or a token id outside the vocabulary. Every
refusal is a ``ShardError`` that names the file, the problem and how to get a good copy.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VOCAB_SIZE = 50257  # GPT-2: 50256 BPE ranks + <|endoftext|>
EOT = 50256  # <|endoftext|>, the token that starts every document
SHARD_TOKENS = 100_000_000  # tokens per shard file unless a tool is told otherwise (FineWeb-10B's size)
SEQ_LEN = 1024  # the sequence length the GPT-2 corpora are cut for (configs/data/*.yaml: data.seq_len)


def min_split_tokens(seq_len: int = SEQ_LEN) -> int:
    """The fewest tokens a train or validation split may hold: two sequences plus the last target."""
    return 2 * seq_len + 1

# How to remake a shard, by file-name prefix (the part before "_train_" / "_val_").
_REMEDY = {
    "fineweb": "python -m data.fineweb download --out <dir> (or: python -m data.fineweb tokenize ...)",
    "shakespeare": "python -m data.shakespeare --out data_cache/shakespeare",
    "synthetic": "python -m data.synthetic --out <dir>",
}


class ShardError(ValueError):
    """A shard file is missing, malformed or holds ids outside the vocabulary. ``path`` is the file (when
    one is to blame); ``token_id`` the first id found outside the vocabulary (None for other problems)."""

    def __init__(self, message: str, path: Path | None = None, token_id: int | None = None) -> None:
        super().__init__(message)
        self.path, self.token_id = path, token_id


def shard_name(prefix: str, split: str, index: int) -> str:
    """``shard_name("fineweb", "val", 0) -> "fineweb_val_000000.bin"``."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return f"{prefix}_{split}_{index:06d}.bin"


def _remedy(path: Path) -> str:
    prefix = path.name.split("_train_")[0].split("_val_")[0]
    how = _REMEDY.get(prefix, "the command that made it")
    return f"Delete {path} and make a good copy with: {how}"


def _fail(path: Path, problem: str, token_id: int | None = None) -> ShardError:
    return ShardError(f"{path}: {problem}. {_remedy(path)}", path=path, token_id=token_id)


def write_shard(path: str | os.PathLike, tokens, vocab_size: int = VOCAB_SIZE) -> Path:
    """Write ``tokens`` (any integer array-like) as a shard at ``path``; returns the path.

    The file appears atomically (written to ``<path>.tmp`` then renamed), so a crash never leaves a
    half-written shard under the final name.
    """
    path = Path(path)
    toks = np.asarray(tokens)
    if toks.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {toks.shape}")
    if toks.size and not np.issubdtype(toks.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got dtype {toks.dtype}")
    if toks.size and (int(toks.min()) < 0 or int(toks.max()) >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}); got min {int(toks.min())}, max {int(toks.max())}"
        )
    if toks.size >= 2**31:
        raise ValueError(f"{toks.size} tokens do not fit the int32 header count; split them into shards")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, toks.size
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(toks.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)
    return path


def read_header(path: str | os.PathLike) -> int:
    """Validate the header and the file size of a shard; return its token count (no token is read)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise _fail(path, f"truncated header: the file has {size} bytes, a header needs {HEADER_BYTES}")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != MAGIC:
        raise _fail(path, f"wrong magic number {int(header[0])} (expected {MAGIC}); not a token shard")
    if header[1] != VERSION:
        raise _fail(path, f"unsupported version {int(header[1])} (expected {VERSION})")
    count = int(header[2])
    expected = HEADER_BYTES + 2 * count
    if count < 0:
        raise _fail(path, f"negative token count {count} in the header")
    if size < expected:
        raise _fail(
            path,
            f"truncated: the header promises {count} tokens ({expected} bytes) but the file has {size} bytes",
        )
    if size > expected:
        raise _fail(
            path,
            f"token count disagrees with the file size: the header says {count} tokens ({expected} bytes) "
            f"but the file has {size} bytes",
        )
    return count


# (resolved path, size, mtime_ns, vocab_size) of files whose every token id has been checked.
_IDS_CHECKED: set[tuple[str, int, int, int]] = set()
_CHUNK = 1 << 24  # tokens per vectorised max (32 MiB of uint16)


def check_ids(path: str | os.PathLike, tokens: np.ndarray, vocab_size: int = VOCAB_SIZE, start: int = 0):
    """Raise ``ShardError`` if any id in ``tokens`` (a slice of ``path`` beginning at token ``start``) is
    ``>= vocab_size``. Vectorised; works chunk by chunk so a memory map is streamed, not copied."""
    for lo in range(0, len(tokens), _CHUNK):
        chunk = tokens[lo : lo + _CHUNK]
        if chunk.size and int(chunk.max()) >= vocab_size:
            bad = int(np.argmax(chunk >= vocab_size))
            raise _fail(
                Path(path),
                f"token id {int(chunk[bad])} at token {start + lo + bad} is outside the vocabulary "
                f"(ids must be < {vocab_size})",
                token_id=int(chunk[bad]),
            )


def read_shard(
    path: str | os.PathLike, vocab_size: int = VOCAB_SIZE, check_all_ids: bool = True
) -> np.ndarray:
    """Memory-map a shard's tokens as a read-only ``uint16`` array, after validating it.

    The header and size are checked on every call. With ``check_all_ids`` every token id is checked
    against ``vocab_size`` once per file version (cached by path, size and mtime within the process);
    ``TrainLoader`` passes ``False`` and instead checks each window it serves.
    """
    path = Path(path)
    count = read_header(path)
    if count == 0:
        return np.zeros(0, dtype=np.uint16)
    tokens = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(count,))
    if check_all_ids:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, vocab_size)
        if key not in _IDS_CHECKED:
            check_ids(path, tokens, vocab_size)
            _IDS_CHECKED.add(key)
    return tokens


def find_shards(pattern: str | os.PathLike) -> list[Path]:
    """Files matching a glob pattern, sorted by name (``*.tmp`` partial files excluded)."""
    return [Path(p) for p in sorted(glob.glob(str(pattern))) if not p.endswith(".tmp")]


def verify_shards(paths, vocab_size: int = VOCAB_SIZE) -> int:
    """Fully validate every shard in ``paths`` (header, size, all ids); return the total token count."""
    return sum(len(read_shard(p, vocab_size)) for p in paths)
