"""Distributed, deterministic, random-access loaders over token shards.

Training stream (``TrainLoader``)
---------------------------------
* **Windows.** Each train file (sorted by name) is cut into non-overlapping windows of ``seq_len + 1``
  tokens at offsets ``0, seq_len, 2*seq_len, ...`` (consecutive windows share one token, as in llm.c:
  ``x = w[:-1]``, ``y = w[1:]``). A file of ``n`` tokens has ``(n - 1) // seq_len`` windows; the tail is
  unused. Windows are numbered ``0 .. W-1`` in file order.
* **Order.** The stream is the endless concatenation of epochs ``e = 0, 1, 2, ...``; epoch ``e`` visits
  every window once, in the order ``perm(seed, e)``: a keyed pseudo-random permutation of ``0 .. W-1``
  (a 4-round Feistel network with cycle walking, keys derived from ``(seed, e)`` by splitmix64; pure
  integer arithmetic, so the order never depends on library versions and costs no memory).
  With ``shuffle=False`` every epoch is the plain file order (the modded-nanogpt / llm.c stream) and the
  seed is ignored.
* **Batches.** The global batch of step ``t`` (0-based) is stream items ``t*G .. t*G+G-1`` with
  ``G = global_seqs``; it may straddle an epoch boundary. Rank ``r`` of ``R`` serves the contiguous slice
  ``[r*G/R, (r+1)*G/R)`` of it, as ``accum_steps = G/(R*micro_seqs)`` micro-batches of ``micro_seqs``
  sequences. So the global batch at step ``t`` depends only on (files, seq_len, global_seqs, seed,
  shuffle), never on the world size or the micro-batch size.
* **Random access.** ``batch(t)`` may be asked for any step (the trainer asks ``t-1`` or ``t+1`` for
  two-pass estimators); the last few batches are cached so none is read from disk twice.
* **Position.** ``position(t)`` gives the exact place of step ``t`` (epoch, item in the epoch, shard,
  token offset); ``state_dict()`` stores it with a fingerprint of the data, ``load_state_dict()``
  checks the fingerprint and restores the step.

Validation stream (``ValLoader``)
---------------------------------
The first ``val_tokens`` tokens of the val files (concatenated in name order; one more token is read
for the last target), cut into ``val_tokens / seq_len`` sequences, split into contiguous equal slices
across ranks: the same tokens for every run and every world size.
"""

from __future__ import annotations

import glob
import hashlib
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from data.shards import VOCAB_SIZE, ShardError, check_ids, find_shards, read_header, read_shard

_TEXT_TOOL = "python -m data.text --out DIR --tokenizer gpt2 --val-fraction 0.1 FILES_OR_DIRS"
_HOW_TO_MAKE = (
    "Make shards with one of: `python -m data.shakespeare --out data_cache/shakespeare` (quick start), "
    "`python -m data.synthetic --out data_cache/synthetic`, "
    "`python -m data.fineweb download --train-shards 8 --out data_cache/fineweb10B`, "
    f"or from your own text `{_TEXT_TOOL}` (it prints the overrides to train on them)"
)
_SHARD_NAME = re.compile(r"^(?P<prefix>.+)_(?P<split>train|val)_\d{6}\.bin$")


class DataFilesError(ValueError):
    """The files a loader was given cannot serve it: none match, or they hold too few tokens. ``setting``
    names the loader argument to change (``files``, ``seq_len`` or ``val_tokens``); the message says what
    the folder holds and how to make or point at the right files."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


def _listing(names: list[str], n: int = 10) -> str:
    more = f" ... and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _missing_shards_message(split: str, pattern: str, matched: list[Path] | None = None) -> str:
    """Why no ``split`` shard was found for ``pattern`` (nothing matched, or only the other split's
    shards did): what the folder holds, and how to make or point at the right files."""
    if matched:  # a train pattern that matches validation shards only
        head = (f"the {split} shard pattern {pattern!r} matches only validation shards "
                f"({_listing([p.name for p in matched])}), and training on them is refused")
    else:
        head = f"no {split} shard files match {pattern!r}"
    folder = Path(pattern).parent
    if glob.has_magic(str(folder)):
        return f"{head}. {_HOW_TO_MAKE}"
    if not folder.is_dir():
        return f"{head}: the folder {folder} does not exist. {_HOW_TO_MAKE}"
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return f"{head}: the folder {folder} is empty. {_HOW_TO_MAKE}"
    shards: dict[str, dict[str, list[str]]] = {}
    for name in names:
        m = _SHARD_NAME.match(name)
        if m:
            shards.setdefault(m["split"], {}).setdefault(m["prefix"], []).append(name)
    held = f"{folder} holds: {_listing(names)}"
    if split == "train" and shards.get("val") and not shards.get("train"):
        vals = [n for names_ in shards["val"].values() for n in names_]
        return (
            f"{head}: {folder} holds validation shard(s) ({_listing(vals)}) but no train shard, so the train "
            f"split was empty (older `python -m data.fineweb tokenize` runs put all of a text smaller than "
            f"--shard-tokens into shard 0, the validation split; `download --train-shards 0` fetches only "
            f"that shard). Make both splits from plain text with "
            f"`python -m data.text --out {folder} --tokenizer gpt2 --val-fraction 0.1 FILES_OR_DIRS` (add "
            f"--force to replace shards of the same --prefix); it prints the overrides to train on them. "
            f"{held}"
        )
    hint = ""
    if shards.get(split):
        options = [f"data.{split}_files={folder / f'{prefix}_{split}_*.bin'}"
                   for prefix in sorted(shards[split])]
        hint = f" Did you mean {' or '.join(options)}?"
    elif split == "val" and shards.get("train"):
        hint = (" It holds train shards but no validation shard: make both splits with "
                f"`{_TEXT_TOOL}` (or name held-out files with --val-files).")
    return f"{head}; {held}.{hint} {_HOW_TO_MAKE}"


_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def permute(items: np.ndarray, n: int, seed: int, epoch: int) -> np.ndarray:
    """The keyed permutation of ``0..n-1`` for (seed, epoch), evaluated at ``items`` (vectorised).

    A 4-round balanced Feistel network on the smallest even number of bits covering ``n`` is a
    bijection of ``[0, 2**bits)``; cycle walking (re-applying it to outputs ``>= n``) restricts it to a
    bijection of ``[0, n)``. ``2**bits < 4n``, so few walks are needed.
    """
    items = np.asarray(items, dtype=np.uint64)
    if n <= 1:
        return items.astype(np.int64)
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    half = np.uint64(bits // 2)
    mask = np.uint64((1 << (bits // 2)) - 1)
    base = _splitmix64(_splitmix64(seed & _M64) ^ (epoch & _M64))
    keys = [np.uint64(_splitmix64(base + r)) for r in range(4)]

    def feistel(v: np.ndarray) -> np.ndarray:
        left, right = v >> half, v & mask
        with np.errstate(over="ignore"):
            for k in keys:
                left, right = right, left ^ (_mix(right ^ k) & mask)
        return (left << half) | right

    out = feistel(items)
    todo = out >= n
    while todo.any():
        out[todo] = feistel(out[todo])
        todo = out >= n
    return out.astype(np.int64)


def _pin(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t.pin_memory() if device.type == "cuda" else t


def sequential_steps(n: int, step_tokens: int, first: bool) -> int:
    """Steps modded-nanogpt's stream takes from a shard of ``n`` tokens, B = ``step_tokens`` a step: it
    moves on when ``pos + B + 1 >= n`` at the top of a step, so positions ``pos = k·B`` with
    ``k·B + B + 1 < n`` are taken; a shard it moved into takes its first step unchecked, which needs
    ``n >= B + 1`` (a shorter one would end the track's run; here it is skipped)."""
    k = (n - step_tokens - 2) // step_tokens + 1 if n >= step_tokens + 2 else 0
    return 1 if k == 0 and not first and n >= step_tokens + 1 else k


class TrainLoader:
    """This rank's micro-batches of the global training batch at any step (see the module docstring).

    Args:
        files: glob pattern of train shards, e.g. ``"data_cache/fineweb10B/fineweb_train_*.bin"``.
        seq_len: tokens per sequence (x and y are ``(micro_seqs, seq_len)`` int64).
        global_seqs: sequences per optimizer step over all ranks and micro-batches.
        micro_seqs: sequences per forward/backward on one rank.
        rank, world_size: this process and the number of processes.
        device: where the tensors go; on CUDA they are staged in pinned memory and copied non-blocking.
        seed: picks the window order of every epoch (ignored when ``shuffle=False``).
        shuffle: ``False`` serves the windows in file order.
        sequential: modded-nanogpt's stream (its optimization track's data order): file order, each
            step's ``global_seqs · seq_len + 1`` tokens from one shard; a shard's tail too short for the
            next step is skipped (`sequential_steps`), so step s, rank r starts at token
            ``k · B + r · B / W`` of its shard, k the step's place in it. Implies ``shuffle=False``.
        vocab_size: served token ids must be below it (checked on every window read).
        cache_size: how many recent steps' batches stay cached (>= 3 covers t-1, t, t+1).
    """

    def __init__(
        self,
        files: str,
        seq_len: int,
        global_seqs: int,
        micro_seqs: int,
        rank: int = 0,
        world_size: int = 1,
        device="cpu",
        seed: int = 0,
        shuffle: bool = True,
        vocab_size: int = VOCAB_SIZE,
        sequential: bool = False,
        cache_size: int = 4,
    ):
        for name, v in (("seq_len", seq_len), ("global_seqs", global_seqs), ("micro_seqs", micro_seqs),
                        ("world_size", world_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if global_seqs % (micro_seqs * world_size) != 0:
            raise ValueError(_divisibility_message("global_seqs", global_seqs, micro_seqs, world_size))
        self.pattern = str(files)
        self.paths = find_shards(self.pattern)
        if not self.paths or all(_is_val_shard(p) for p in self.paths):  # never train on validation only
            raise DataFilesError(_missing_shards_message("train", self.pattern, self.paths), "files")
        self.seq_len, self.global_seqs, self.micro_seqs = seq_len, global_seqs, micro_seqs
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.sequential = bool(sequential)
        self.seed, self.vocab_size = int(seed), vocab_size
        self.shuffle = bool(shuffle) and not self.sequential
        self.accum_steps = global_seqs // (micro_seqs * world_size)
        self.tokens_per_step = global_seqs * seq_len
        self.local_seqs = global_seqs // world_size

        # Header/size checks now (cheap); token ids are checked window by window as they are served.
        self.counts = [read_header(p) for p in self.paths]
        self._content_sha: str | None = None
        self._tokens: list[np.ndarray | None] = [None] * len(self.paths)
        if self.sequential:
            per_file = np.array([sequential_steps(n, global_seqs * seq_len, i == 0) * global_seqs
                                 for i, n in enumerate(self.counts)], dtype=np.int64)
        else:
            per_file = np.array([max(0, (n - 1) // seq_len) for n in self.counts], dtype=np.int64)
        self.num_windows = int(per_file.sum())
        if self.num_windows == 0 and self.sequential:
            raise DataFilesError(
                f"data order sequential takes each step's {global_seqs * seq_len + 1} tokens from one shard, "
                f"and none of the {len(self.paths)} file(s) matching {self.pattern!r} (largest: "
                f"{max(self.counts)} tokens) holds that many; use bigger shards or a smaller batch",
                "files",
            )
        if self.num_windows == 0:
            raise DataFilesError(
                f"the {len(self.paths)} file(s) matching {self.pattern!r} hold {sum(self.counts)} tokens, "
                f"fewer than one window of seq_len+1={seq_len + 1}; use a smaller seq_len or more data",
                "seq_len",
            )
        self._first_window = np.concatenate([[0], np.cumsum(per_file)])  # file i owns [fw[i], fw[i+1])
        self.step = 0  # the stream cursor: the next step next_batch() returns (batch() never moves it)
        self._cache: OrderedDict[int, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._staging: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []  # pinned ring (CUDA)
        self._next_stage = 0

    # ---- where things are -------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> float:
        return self.num_windows / self.global_seqs

    def _windows(self, items: np.ndarray) -> np.ndarray:
        """Global stream items -> window ids."""
        epoch = items // self.num_windows
        k = items % self.num_windows
        if not self.shuffle:
            return k
        out = np.empty_like(k)
        for e in np.unique(epoch):  # a batch spans at most two epochs
            sel = epoch == e
            out[sel] = permute(k[sel], self.num_windows, self.seed, int(e))
        return out

    def _locate(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window ids -> (file index, token offset)."""
        f = np.searchsorted(self._first_window, windows, side="right") - 1
        return f, (windows - self._first_window[f]) * self.seq_len

    def position(self, step: int) -> dict:
        """Exact place of the first sequence of global batch ``step`` in the stream."""
        item = step * self.global_seqs
        f, off = self._locate(self._windows(np.array([item], dtype=np.int64)))
        return {
            "step": int(step),
            "epoch": item // self.num_windows,
            "item": item % self.num_windows,  # index within the epoch's window order
            "shard": int(f[0]),
            "shard_name": self.paths[int(f[0])].name,
            "offset": int(off[0]),  # token offset of that window inside the shard
        }

    # ---- serving --------------------------------------------------------------------------------------
    def _shard(self, i: int) -> np.ndarray:
        if self._tokens[i] is None:
            self._tokens[i] = np.asarray(read_shard(self.paths[i], self.vocab_size, check_all_ids=False))
        return self._tokens[i]

    def _gather(self, step: int, x: np.ndarray, y: np.ndarray | None = None) -> None:
        """Copy this rank's windows of global batch ``step`` out of the memory maps: whole windows into
        ``x`` (local_seqs, seq_len+1), or inputs into ``x`` and targets into ``y`` (local_seqs, seq_len).
        Plain numpy row copies: no thread pool, so the cost stays flat on a busy machine."""
        first = step * self.global_seqs + self.rank * self.local_seqs
        items = np.arange(first, first + self.local_seqs, dtype=np.int64)
        files, offsets = self._locate(self._windows(items))
        span, t = self.seq_len + 1, self.seq_len
        for row, (f, o) in enumerate(zip(files.tolist(), offsets.tolist())):
            window = self._shard(f)[o : o + span]
            if y is None:
                x[row] = window
            else:
                x[row] = window[:t]
                y[row] = window[1:]
        top = int(x.max()) if y is None else max(int(x[:, 0].max()), int(y.max()))  # covers every token
        if top >= self.vocab_size:
            rows = x if y is None else y
            row = int(np.argmax((rows >= self.vocab_size).any(axis=1) | (x[:, 0] >= self.vocab_size)))
            f, o = int(files[row]), int(offsets[row])
            check_ids(self.paths[f], self._shard(f)[o : o + span], self.vocab_size, start=o)

    def _stage(self) -> torch.Tensor:
        """A pinned int32 staging buffer whose previous non-blocking copy has finished."""
        if len(self._staging) < 2:
            buf = torch.empty((self.local_seqs, self.seq_len + 1), dtype=torch.int32).pin_memory()
            self._staging.append((buf, None))
        buf, event = self._staging[self._next_stage]
        if event is not None:
            event.synchronize()
        return buf

    def batch(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's ``accum_steps`` micro-batches ``(x, y)`` of global batch ``step``.

        ``x`` and ``y`` are int64 ``(micro_seqs, seq_len)`` on ``device``, ``y`` is ``x`` shifted by one
        token. Any step may be asked (look-ahead ``step+1``, previous ``step-1``), in any order; recent
        batches are cached, so treat the tensors as read-only. Pure: the stream cursor ``self.step`` is
        moved only by ``next_batch()`` and ``load_state_dict()``; a trainer that asks by step passes the
        step to ``state_dict(step=...)``.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step in self._cache:
            self._cache.move_to_end(step)
            return self._cache[step]
        m = self.micro_seqs
        out = []
        if self.device.type == "cuda":  # stage int32 windows in pinned memory, widen on the GPU
            staged = self._stage()
            self._gather(step, staged.numpy())
            on_dev = staged.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._staging[self._next_stage] = (staged, event)
            self._next_stage = (self._next_stage + 1) % 2
            for i in range(self.accum_steps):
                rows = on_dev[i * m : (i + 1) * m]
                x, y = rows[:, :-1].to(torch.int64), rows[:, 1:].to(torch.int64)
                out.append((x.contiguous(), y.contiguous()))
        else:  # gather straight into int64 inputs and targets; micro-batches are contiguous row blocks
            x = np.empty((self.local_seqs, self.seq_len), dtype=np.int64)
            y = np.empty_like(x)
            self._gather(step, x, y)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            out = [(xt[i * m : (i + 1) * m], yt[i * m : (i + 1) * m]) for i in range(self.accum_steps)]
        self._cache[step] = out
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def next_batch(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``batch(self.step)``, then the cursor moves on: the plain stream, one step after another."""
        out = self.batch(self.step)
        self.step += 1
        return out

    # ---- checkpointing ----------------------------------------------------------------------------------
    def _content(self) -> str:
        """sha256 of every shard's first and last 4,096 tokens, in order: what tells the same shards at a
        new path from other shards with the same names and sizes (cheap: 32 KiB read per shard)."""
        if self._content_sha is None:
            h = hashlib.sha256()
            for i in range(len(self.paths)):
                tokens = self._shard(i)
                h.update(np.ascontiguousarray(tokens[:4096]).tobytes())
                h.update(np.ascontiguousarray(tokens[-4096:]).tobytes())
            self._content_sha = h.hexdigest()
        return self._content_sha

    def _fingerprint(self) -> dict:
        return {
            "files": [[p.name, n] for p, n in zip(self.paths, self.counts)],
            "content": self._content(),
            "seq_len": self.seq_len,
            "global_seqs": self.global_seqs,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "sequential": self.sequential,  # a checkpoint that predates the key is not compared on it
        }

    def state_dict(self, step: int | None = None) -> dict:
        """Exact position of ``step`` (default: ``self.step``, the next step to train) and the data identity.

        World size and micro-batch size are not part of it: a run may resume on another world size.
        """
        step = self.step if step is None else int(step)
        return {"version": 1, **self.position(step), **self._fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["step"]`` after checking that the data, seq_len, batch and seed are the same."""
        mine = self._fingerprint()
        # a key the checkpoint predates (e.g. "content") is not compared
        diffs = [k for k in mine if k in state and state[k] != mine[k]]
        if "files" in diffs and _same_files(state, mine):  # lists vs tuples after a round trip
            diffs.remove("files")
        if diffs:
            detail = "; ".join(f"{k}: saved {_short(state.get(k))}, now {_short(mine[k])}" for k in diffs)
            raise ValueError(
                f"cannot resume the train stream: the loader differs from the checkpoint ({detail})"
            )
        self.step = int(state["step"])
        self._cache.clear()


class ValLoader:
    """The fixed validation set: first ``val_tokens`` tokens of the val files, split across ranks.

    Iterating yields this rank's micro-batches ``(x, y)``, int64 ``(micro_seqs, seq_len)`` on ``device``;
    ``len()`` is their number, equal on every rank. ``val_tokens`` must be a multiple of
    ``seq_len * micro_seqs * world_size`` so that every token is scored exactly once.
    """

    def __init__(
        self,
        files: str,
        seq_len: int,
        val_tokens: int,
        micro_seqs: int,
        rank: int = 0,
        world_size: int = 1,
        device="cpu",
        vocab_size: int = VOCAB_SIZE,
    ):
        for name, v in (("seq_len", seq_len), ("val_tokens", val_tokens), ("micro_seqs", micro_seqs),
                        ("world_size", world_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if val_tokens % seq_len != 0:
            lo, hi = (val_tokens // seq_len) * seq_len, (val_tokens // seq_len + 1) * seq_len
            raise ValueError(
                f"val_tokens={val_tokens} must be a multiple of seq_len={seq_len} "
                f"(e.g. {lo or seq_len} or {hi})"
            )
        n_seqs = val_tokens // seq_len
        if n_seqs % (micro_seqs * world_size) != 0:
            raise ValueError(_divisibility_message("val_tokens/seq_len", n_seqs, micro_seqs, world_size))
        self.pattern = str(files)
        self.paths = find_shards(self.pattern)
        if not self.paths:
            raise DataFilesError(_missing_shards_message("val", self.pattern), "files")
        self.seq_len, self.val_tokens, self.micro_seqs = seq_len, val_tokens, micro_seqs
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        per_rank = n_seqs // world_size
        self.num_batches = per_rank // micro_seqs

        # This rank's sequences cover stream tokens [lo, hi] (inclusive: one extra for the last target).
        lo = rank * per_rank * seq_len
        hi = lo + per_rank * seq_len + 1
        counts = [read_header(p) for p in self.paths]
        if sum(counts) < val_tokens + 1:
            raise DataFilesError(
                f"val_tokens={val_tokens} needs {val_tokens + 1} tokens (one more for the last target) "
                f"but the {len(self.paths)} file(s) matching {self.pattern!r} hold {sum(counts)}; use a "
                f"smaller val_tokens (at most {(sum(counts) - 1) // seq_len * seq_len} for "
                f"seq_len={seq_len}) or more val data",
                "val_tokens",
            )
        pieces, start = [], 0
        for p, n in zip(self.paths, counts):
            a, b = max(lo, start), min(hi, start + n)
            if a < b:
                toks = read_shard(p, vocab_size, check_all_ids=False)[a - start : b - start]
                check_ids(p, toks, vocab_size, start=a - start)
                pieces.append(np.asarray(toks))
            start += n
        stream = torch.from_numpy(np.concatenate(pieces).astype(np.int32))
        # rows[i] = the seq_len+1 tokens of sequence i (shared boundary token with the next row).
        rows = stream.unfold(0, seq_len + 1, seq_len)
        self._rows = _pin(rows.contiguous(), self.device)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        m = self.micro_seqs
        for i in range(self.num_batches):
            rows = self._rows[i * m : (i + 1) * m]
            if self.device.type == "cuda":  # pinned int32 -> GPU, widened there
                rows = rows.to(self.device, non_blocking=True)
                yield rows[:, :-1].to(torch.int64).contiguous(), rows[:, 1:].to(torch.int64).contiguous()
            else:  # numpy copies: no torch thread pool
                r = rows.numpy()
                yield (torch.from_numpy(np.ascontiguousarray(r[:, :-1], dtype=np.int64)),
                       torch.from_numpy(np.ascontiguousarray(r[:, 1:], dtype=np.int64)))


def _divisibility_message(what: str, total: int, micro: int, world: int) -> str:
    msg = f"{what}={total} must be divisible by micro_seqs*world_size={micro}*{world}={micro * world}. "
    if total % world == 0:
        per_rank = total // world
        choices = [d for d in range(1, per_rank + 1) if per_rank % d == 0]
        return msg + f"Valid micro_seqs for world_size={world}: {choices}"
    worlds = [d for d in range(1, total + 1) if total % d == 0 and d <= 4096]
    return msg + f"No micro_seqs works with world_size={world}; valid world sizes divide {total}: {worlds}"


def _same_files(state: dict, mine: dict) -> bool:
    return [list(f) for f in state.get("files", [])] == mine["files"]


def _short(v) -> str:
    if isinstance(v, list) and len(v) > 3:
        return f"{len(v)} files ({v[0][0]} .. {v[-1][0]})"
    return repr(v)


def _is_val_shard(path: Path) -> bool:
    m = _SHARD_NAME.match(path.name)
    return m is not None and m["split"] == "val"


__all__ = ["TrainLoader", "ValLoader", "ShardError", "permute"]
