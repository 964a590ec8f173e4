"""FineWeb-10B as GPT-2 token shards, two ways; both resumable, with progress bars and a final verification.

Download the pre-tokenized shards (the NanoGPT speedrun's, Hugging Face dataset ``kjj0/fineweb10B-gpt2``;
~200 MB per 100M-token shard)::

    python -m data.fineweb download --train-shards 103 --out data_cache/fineweb10B

fetches ``fineweb_val_000000.bin`` and ``fineweb_train_000001.bin .. _%06d.bin``. Files already present and
valid are skipped; an invalid one is deleted and fetched again; interrupted downloads are resumed by
``huggingface_hub`` from its ``.incomplete`` file, and nothing is trusted before it validates.
Where the hub cannot be reached (no network, a firewall, ``HF_HUB_OFFLINE=1``) it exits 2 with one line
naming the host and the offline route (``HubUnreachable``; docs/offline.md).

Tokenize the text yourself (``HuggingFaceFW/fineweb``, config ``sample-10BT``, streamed with ``datasets``;
or local parquet / jsonl / txt files with FineWeb's ``text`` column)::

    python -m data.fineweb tokenize --out data_cache/fineweb10B --source hf --workers 8
    python -m data.fineweb tokenize --out DIR --files a.parquet b.jsonl --shard-tokens 100000000

Each document becomes ``[<|endoftext|>] + encode_ordinary(text)`` (tiktoken GPT-2, in worker processes,
order preserved); documents are packed into shards of exactly ``--shard-tokens`` tokens (a document may
span two shards; the last shard is shorter). Shard 0 is ``fineweb_val_000000.bin``, the others
``fineweb_train_%06d.bin`` from 1, as in modded-nanogpt's ``data/fineweb.py``. A progress file records
how many documents each finished shard consumed, so an interrupted run continues where it stopped and
produces the same bytes as an uninterrupted one. ``.txt`` files are one document each.

Neither split is ever empty: shard 0 (validation) is written only once the train split is known to hold at
least ``--min-split-tokens`` (default ``data.shards.min_split_tokens()``), and shard 0
itself must be that large; an input too small for ``--shard-tokens`` stops with the counts and the fix
before any shard is written. For your own plain text, ``python -m data.text`` is simpler: it splits by a
fraction (or by validation files) and prints the trainer overrides for the result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from tqdm import tqdm

from data import shards
from data.shards import EOT, SHARD_TOKENS, ShardError, read_header, read_shard, shard_name, write_shard
from data.tokenizer import TokenizerUnavailable

REPO_ID = "kjj0/fineweb10B-gpt2"
MAX_TRAIN_SHARDS = 103
HF_DATASET, HF_CONFIG = "HuggingFaceFW/fineweb", "sample-10BT"
PREFIX = "fineweb"
MIN_SPLIT_TOKENS = shards.min_split_tokens()
DEFAULT_OUT = "data_cache/fineweb10B"
TEXT_TOOL = "python -m data.text --out DIR --tokenizer gpt2 --val-fraction 0.1 FILES_OR_DIRS"


# ---------------------------------------------------------------------------------------- download
def _hf_hub_download(**kwargs) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(**kwargs)


class HubUnreachable(ConnectionError):
    """The Hugging Face hub could not be reached (no network, a firewall, $HF_HUB_OFFLINE); the message names
    the host and the offline route: download on a connected machine, copy the shards, point the trainer at
    them."""

    def __init__(self, host: str, train_shards: int, offline_mode: bool, cause: BaseException):
        self.host, self.offline_mode = host, offline_mode
        why = ("HF_HUB_OFFLINE is set, so the hub is not contacted" if offline_mode
               else f"could not reach {host} ({type(cause).__name__}: {cause})")
        super().__init__(
            f"{why}. Offline route: on a machine that reaches {host}, run `python -m data.fineweb download "
            f"--train-shards {train_shards} --out DIR`, copy DIR here whole (rsync, scp), then train with "
            f"data.train_files='DIR/fineweb_train_*.bin' data.val_files='DIR/fineweb_val_*.bin' (with DIR = "
            f"{DEFAULT_OUT}, data=fineweb10b finds them as they are); docs/offline.md"
        )


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from or while handling, outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc``, from ``hf_hub_download``, means the hub could not be reached: huggingface_hub's
    ``LocalEntryNotFoundError`` (not cached, and the hub did not answer or offline mode is on), or a transport
    error of the HTTP library it uses (httpx2, httpx, requests), or a plain ``ConnectionError`` or
    ``TimeoutError``."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    kinds = [LocalEntryNotFoundError, ConnectionError, TimeoutError]
    for lib, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                       ("requests", ("ConnectionError", "Timeout"))):
        mod = sys.modules.get(lib)  # already imported if the error came from it
        kinds += [getattr(mod, n) for n in names if mod is not None and hasattr(mod, n)]
    return any(isinstance(e, tuple(kinds)) for e in _chain(exc))


def _hub_host(exc: BaseException) -> str:
    """The host of the request that failed when the error carries it (httpx), else the hub endpoint's."""
    from huggingface_hub import constants

    for e in _chain(exc):
        try:
            return str(e.request.url.host)
        except (AttributeError, RuntimeError):  # no request attached (httpx raises RuntimeError then)
            continue
    return urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT


def _hub_unreachable(exc: BaseException, train_shards: int) -> HubUnreachable:
    """The typed error for ``exc``: offline mode when $HF_HUB_OFFLINE refused the look-up itself (no transport
    error underneath), else the host that did not answer and the error it gave."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    root = list(_chain(exc))[-1]
    refused = isinstance(root, (LocalEntryNotFoundError, OfflineModeIsEnabled))  # nothing was tried
    offline = bool(constants.HF_HUB_OFFLINE) and refused
    return HubUnreachable(_hub_host(exc), train_shards, offline, root)


def download(out, train_shards: int, repo_id: str = REPO_ID, fetch=None) -> list[Path]:
    """Make ``out`` hold the val shard and train shards 1..``train_shards`` of ``repo_id``, all valid.

    ``fetch`` defaults to ``huggingface_hub.hf_hub_download`` (tests pass a stand-in)."""
    fetch = fetch or _hf_hub_download
    if not 0 <= train_shards <= MAX_TRAIN_SHARDS:
        raise ValueError(f"--train-shards must be in 0..{MAX_TRAIN_SHARDS}, got {train_shards}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [shard_name(PREFIX, "val", 0)]
    names += [shard_name(PREFIX, "train", i) for i in range(1, train_shards + 1)]
    bar = tqdm(names, desc="fineweb shards", unit="file")
    for name in bar:
        path = out / name
        if path.exists():
            try:
                read_shard(path)
                bar.set_postfix_str(f"{name} present")
                continue
            except ShardError as e:
                tqdm.write(f"replacing invalid {name}: {e}")
                path.unlink()
        for attempt in (1, 2):
            try:
                got = Path(fetch(repo_id=repo_id, filename=name, repo_type="dataset", local_dir=str(out),
                                 force_download=attempt > 1))
            except Exception as e:
                if not _unreachable(e):
                    raise
                raise _hub_unreachable(e, train_shards) from e
            if got.resolve() != path.resolve():
                os.replace(got, path)
            try:
                read_shard(path)
                break
            except ShardError as e:
                path.unlink()
                if attempt == 2:
                    raise ShardError(f"{name} from {repo_id} is invalid after two downloads: {e}") from e
                tqdm.write(f"downloaded {name} is invalid, fetching it again: {e}")
    return verify(out / n for n in names)


def verify(paths) -> list[Path]:
    """Final pass: every shard fully validated (header, size, all ids); prints a summary."""
    paths = list(paths)
    total = 0
    for p in tqdm(paths, desc="verify", unit="file"):
        total += len(read_shard(p))
    size = sum(p.stat().st_size for p in paths)
    where = paths[0].parent if paths else "-"
    print(f"verified {len(paths)} shard(s): {total:,} tokens, {size / 1e9:.3f} GB in {where}")
    return paths


# ---------------------------------------------------------------------------------------- tokenize
def _kind(path: str) -> str:
    p = path.lower()
    if p.endswith(".parquet"):
        return "parquet"
    if p.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return "json"
    if p.endswith((".txt", ".txt.gz")):
        return "text"
    raise ValueError(f"{path}: unsupported file type; use .parquet, .jsonl/.json or .txt")


def iter_texts(source: str, files=None):
    """Document texts in a fixed order: the FineWeb sample (``source="hf"``) or local files as given."""
    from datasets import load_dataset

    if source == "hf":
        ds = load_dataset(HF_DATASET, name=HF_CONFIG, split="train", streaming=True)
        for row in ds:
            yield row["text"]
        return
    for kind, group in itertools.groupby(map(str, files), key=_kind):
        extra = {"sample_by": "document"} if kind == "text" else {}
        ds = load_dataset(kind, data_files=[str(f) for f in group], split="train", streaming=True, **extra)
        for row in ds:
            if "text" not in row:
                raise ValueError(f"input rows need a 'text' column; got columns {sorted(row)}")
            yield row["text"]


_ENC = None


def _init_worker(ranks_path, ranks_sha256):
    global _ENC
    from data.tokenizer import encoding_from_ranks, get_gpt2_encoding

    _ENC = encoding_from_ranks(ranks_path, ranks_sha256) if ranks_path else get_gpt2_encoding()


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A batch of documents -> (concatenated ``[EOT] + ids`` as uint16, each document's length)."""
    docs = [[EOT, *_ENC.encode_ordinary(t)] for t in texts]
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    flat = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int64, count=int(lengths.sum()))
    if flat.size and int(flat.max()) > EOT:
        raise ValueError(f"the encoding produced id {int(flat.max())} > {EOT}; not a GPT-2 vocabulary")
    return flat.astype(np.uint16), lengths


def _batched(it, n):
    it = iter(it)
    while batch := list(itertools.islice(it, n)):
        yield batch


class _ShardWriter:
    """Packs documents into fixed-size shards; after each shard it records how far the input got:
    ``docs_done`` whole documents plus the first ``doc_tokens_done`` tokens of the next one.

    Shard 0 (validation) is held in memory until ``min_train`` tokens follow it, so that a corpus too
    small to leave a train split writes nothing (``tokenize`` then raises)."""

    def __init__(self, out: Path, prefix: str, shard_tokens: int, progress: dict, progress_path: Path,
                 min_train: int = 1):
        self.out, self.prefix, self.size = out, prefix, shard_tokens
        self.progress, self.progress_path = progress, progress_path
        self.buf = np.empty(shard_tokens, dtype=np.uint16)
        self.fill = 0
        self.docs_done = progress["docs_done"]
        self.min_train = min_train
        self.held = None  # (tokens, docs_done, doc_tokens_done) of shard 0 while it waits
        self.train_seen = 0  # tokens buffered after the held shard 0

    def path(self, index: int) -> Path:
        return self.out / shard_name(self.prefix, "val" if index == 0 else "train", index)

    def add_doc(self, toks: np.ndarray, already: int = 0) -> None:
        """Append document ``toks`` minus its first ``already`` tokens (written by an earlier run)."""
        pos = already
        while pos < len(toks):
            take = min(len(toks) - pos, self.size - self.fill)
            self.buf[self.fill : self.fill + take] = toks[pos : pos + take]
            self.fill += take
            pos += take
            if self.held is not None:
                self.train_seen += take
                if self.train_seen >= self.min_train:
                    self.release()
            if self.fill == self.size:
                finished = pos == len(toks)
                self.flush(self.docs_done + finished, 0 if finished else pos)
        self.docs_done += 1

    def flush(self, docs_done: int, doc_tokens_done: int, final: bool = False) -> None:
        index = self.progress["shards_written"]
        if index == 0 and not final:  # validation: wait until the train split is sure to be big enough
            self.held = (self.buf[: self.fill].copy(), docs_done, doc_tokens_done)
            self.fill, self.train_seen = 0, 0
            return
        write_shard(self.path(index), self.buf[: self.fill])
        self.progress.update(shards_written=index + 1, docs_done=docs_done, doc_tokens_done=doc_tokens_done,
                             complete=final)
        self.save()
        self.fill = 0

    def release(self) -> None:
        """Write the held shard 0 and record the input position at its end."""
        toks, docs_done, doc_tokens_done = self.held
        self.held = None
        write_shard(self.path(0), toks)
        self.progress.update(shards_written=1, docs_done=docs_done, doc_tokens_done=doc_tokens_done,
                             complete=False)
        self.save()

    def save(self) -> None:
        self.progress_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.progress_path.with_name(self.progress_path.name + ".tmp")
        tmp.write_text(json.dumps(self.progress, indent=1))
        os.replace(tmp, self.progress_path)


def tokenize(out, source: str = "hf", files=None, shard_tokens: int = SHARD_TOKENS, workers: int = 1,
             prefix: str = PREFIX, max_shards: int | None = None, ranks_path=None, ranks_sha256=None,
             docs_per_task: int = 256, min_split_tokens: int = MIN_SPLIT_TOKENS) -> list[Path]:
    """Tokenize ``source`` into shards in ``out`` (resuming a previous run); return all shard paths.

    Shard 0 is the validation split, the rest train; each split must hold ``min_split_tokens`` or more,
    else ``ValueError`` before any shard is written (see the module docstring)."""
    if source not in ("hf", "files"):
        raise ValueError(f"source must be 'hf' or 'files', got {source!r}")
    if source == "files" and not files:
        raise ValueError("--files needs at least one parquet/jsonl/txt file")
    for f in files or []:  # fail before any work: unknown types, missing files
        _kind(str(f))
        if not Path(f).is_file():
            raise FileNotFoundError(f"no such input file: {f}")
    if shard_tokens < 1 or workers < 1:
        raise ValueError(f"--shard-tokens and --workers must be >= 1, got {shard_tokens}, {workers}")
    if min_split_tokens < 1:
        raise ValueError(f"--min-split-tokens must be >= 1, got {min_split_tokens}")
    if shard_tokens < min_split_tokens:
        raise ValueError(
            f"--shard-tokens {shard_tokens:,} is below --min-split-tokens {min_split_tokens:,}: shard 0, the "
            f"validation split, holds exactly --shard-tokens tokens. Use --shard-tokens {min_split_tokens:,} "
            f"or more (or lower --min-split-tokens); for plain text, `{TEXT_TOOL}` picks the split for you"
        )
    if files and all(_kind(str(f)) == "text" for f in files):
        print(f"tip: for plain text files, `{TEXT_TOOL}` splits train/validation by a fraction and prints "
              f"the trainer overrides", file=sys.stderr)
    out = Path(out)
    ident = {"source": source, "files": [str(Path(f).resolve()) for f in files or []],
             "shard_tokens": shard_tokens, "prefix": prefix,
             "ranks": str(ranks_path) if ranks_path else "gpt2"}
    progress_path = out / f"{prefix}_tokenize_progress.json"
    progress = {**ident, "shards_written": 0, "docs_done": 0, "doc_tokens_done": 0, "complete": False}
    if progress_path.exists():
        saved = json.loads(progress_path.read_text())
        if {k: saved.get(k) for k in ident} != ident:
            raise ValueError(
                f"{progress_path} belongs to a different run ({ {k: saved.get(k) for k in ident} }); "
                f"use another --out or delete {out} to start over"
            )
        progress = saved
    writer = _ShardWriter(out, prefix, shard_tokens, progress, progress_path, min_split_tokens)
    done = [writer.path(i) for i in range(progress["shards_written"])]
    for p in done:  # header + size check of what a previous run finished
        if read_header(p) != shard_tokens and not progress["complete"]:
            raise ShardError(f"{p}: a finished shard must hold {shard_tokens} tokens; delete {out} and rerun")
    if progress["complete"]:
        print(f"{out}: tokenization already complete ({len(done)} shards)")
        return verify(done)
    if done:
        print(f"resuming after shard {len(done) - 1}: skipping {progress['docs_done']:,} documents")

    if not ranks_path:
        from data.tokenizer import get_gpt2_encoding

        get_gpt2_encoding()  # fetched here, once, if missing: the workers then find the local copy
    texts = itertools.islice(iter_texts(source, files), progress["docs_done"], None)
    tasks = _batched(texts, docs_per_task)
    if workers > 1:
        pool = mp.get_context("spawn").Pool(workers, _init_worker, (ranks_path, ranks_sha256))
        results = pool.imap(_encode, tasks)  # ordered: the output never depends on --workers
    else:
        pool = None
        _init_worker(ranks_path, ranks_sha256)
        results = map(_encode, tasks)
    bar = tqdm(desc=f"tokenizing into {out}", unit="tok", unit_scale=True)
    already = progress["doc_tokens_done"]  # the first document was partly written by the previous run
    try:
        for flat, lengths in results:
            starts = np.concatenate([[0], np.cumsum(lengths)])
            for i in range(len(lengths)):
                writer.add_doc(flat[starts[i] : starts[i + 1]], already)
                already = 0
                if max_shards is not None and progress["shards_written"] >= max_shards:
                    print(f"stopped after {max_shards} shard(s) (--max-shards); rerun without it to continue")
                    return verify(writer.path(j) for j in range(progress["shards_written"]))
            bar.update(int(lengths.sum()))
        if writer.held is not None or progress["shards_written"] == 0:
            n_val = len(writer.held[0]) if writer.held is not None else writer.fill
            n_train = writer.fill if writer.held is not None else 0
            raise ValueError(_split_message(prefix, shard_tokens, n_val, n_train, min_split_tokens))
        if writer.fill:
            writer.flush(writer.docs_done, 0, final=True)
        else:
            progress["complete"] = True
            writer.save()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return verify(writer.path(i) for i in range(progress["shards_written"]))


def _split_message(prefix: str, shard_tokens: int, n_val: int, n_train: int, need: int) -> str:
    """Why a tokenize run would leave a split too small, and what to change."""
    total = n_val + n_train
    if total >= 2 * need:
        fix = (f"use a smaller --shard-tokens (from {need:,} to {total - need:,} for this input, e.g. "
               f"{min(max(need, total // 10), total - need):,})")
    else:
        fix = f"add text ({2 * need:,} tokens in all at the least) or lower --min-split-tokens"
    return (
        f"the input holds {total:,} tokens: shard 0 ({shard_name(prefix, 'val', 0)}, the validation split) "
        f"would take {n_val:,} of them (the first --shard-tokens {shard_tokens:,}) and leave {n_train:,} for "
        f"the train split, but each split needs at least {need:,} (--min-split-tokens). Nothing was written. "
        f"Fix: {fix}; or, for plain text, run `{TEXT_TOOL}`, which splits by a fraction and prints the "
        f"trainer overrides"
    )


# ---------------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.fineweb", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help=f"fetch pre-tokenized shards from the HF dataset {REPO_ID}")
    d.add_argument("--train-shards", type=int, default=MAX_TRAIN_SHARDS, help="100M tokens each")
    d.add_argument("--out", default=DEFAULT_OUT)
    t = sub.add_parser("tokenize", help="tokenize FineWeb text (streamed from HF, or local files)")
    t.add_argument("--out", default=DEFAULT_OUT)
    t.add_argument("--source", choices=["hf", "files"], default=None, help="default: files if given")
    t.add_argument("--files", nargs="+", help="local .parquet/.jsonl/.txt files with a 'text' column (plain "
                   "text of your own: `python -m data.text` is simpler)")
    t.add_argument("--shard-tokens", type=int, default=SHARD_TOKENS,
                   help=f"tokens per shard; shard 0 is the validation split (default {SHARD_TOKENS:,})")
    t.add_argument("--min-split-tokens", type=int, default=MIN_SPLIT_TOKENS,
                   help=f"fewest tokens either split may hold (default {MIN_SPLIT_TOKENS})")
    t.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    t.add_argument("--prefix", default=PREFIX)
    t.add_argument("--max-shards", type=int, help="stop after N shards (rerun to continue)")
    t.add_argument("--bpe-ranks", help="use this .tiktoken ranks file instead of GPT-2 (tests, other vocabs)")
    t.add_argument("--bpe-sha256", help="expected sha256 of --bpe-ranks")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.cmd == "download":
        try:
            download(a.out, a.train_shards)
        except HubUnreachable as e:
            print(f"python -m data.fineweb download: error: {e}", file=sys.stderr)
            return 2
    else:
        source = a.source or ("files" if a.files else "hf")
        try:
            tokenize(a.out, source, a.files, a.shard_tokens, a.workers, a.prefix, a.max_shards,
                     a.bpe_ranks, a.bpe_sha256, min_split_tokens=a.min_split_tokens)
        except TokenizerUnavailable as e:
            print(f"python -m data.fineweb: error: {e}", file=sys.stderr)
            return 2
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

