"""TrainLoader / ValLoader semantics: windows, order, ranks, look-ahead, resume, validation set, errors."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from data.loader import TrainLoader, ValLoader, permute
from data.shards import ShardError, shard_name, write_shard

REPO = Path(__file__).resolve().parents[1]
T = 8  # seq_len in these tests


@pytest.fixture
def shards(tmp_path):
    """Three train shards of distinct sizes (tokens = their global position mod 50000) and two val shards."""
    sizes, start = [203, 97, 150], 0
    for i, n in enumerate(sizes):
        write_shard(tmp_path / shard_name("t", "train", i), (np.arange(start, start + n) % 50000))
        start += n
    write_shard(tmp_path / shard_name("t", "val", 0), np.arange(40) + 1000)
    write_shard(tmp_path / shard_name("t", "val", 1), np.arange(60) + 2000)
    return str(tmp_path / "t_train_*.bin"), str(tmp_path / "t_val_*.bin")


def _global(files, step, world, micro, global_seqs=12, **kw):
    """The global batch of ``step`` gathered from every rank of a ``world``-process loader, as (x, y)."""
    xs, ys = [], []
    for r in range(world):
        loader = TrainLoader(files, T, global_seqs, micro, rank=r, world_size=world, **kw)
        for x, y in loader.batch(step):
            xs.append(x)
            ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def test_permutation_is_a_bijection_and_keyed():
    for n in [1, 2, 3, 4, 5, 7, 16, 17, 100, 1000, 4099]:
        for seed, epoch in [(0, 0), (0, 1), (3, 0)]:
            p = permute(np.arange(n), n, seed, epoch)
            assert sorted(p.tolist()) == list(range(n))
    a, b, c = (permute(np.arange(1000), 1000, s, e) for s, e in [(0, 0), (0, 1), (1, 0)])
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a[[5, 500]], permute(np.array([5, 500]), 1000, 0, 0))  # random access


def test_batch_shapes_shift_and_windows(shards):
    files, _ = shards
    loader = TrainLoader(files, T, 12, 4)
    assert loader.accum_steps == 3 and loader.tokens_per_step == 12 * T
    assert loader.num_windows == (202 // T) + (96 // T) + (149 // T)
    micro = loader.batch(0)
    assert len(micro) == 3
    stream = np.arange(450) % 50000
    for x, y in micro:
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (4, T)
        assert x.is_contiguous() and y.is_contiguous()
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.numpy(), y.numpy()):
            start = int(row_x[0])  # tokens equal their stream position here
            assert np.array_equal(row_x, stream[start : start + T])
            assert np.array_equal(row_y, stream[start + 1 : start + T + 1])


def test_unshuffled_stream_is_file_order_and_windows_stay_in_files(shards):
    files, _ = shards
    loader = TrainLoader(files, T, 4, 4, shuffle=False)
    firsts = [int(x[i, 0]) for s in range(10) for x, _ in loader.batch(s) for i in range(4)]
    expected = [w * T for w in range(25)] + [203 + w * T for w in range(12)] + [300]
    assert firsts[:38] == expected[:38]
    assert loader.position(6) == {"step": 6, "epoch": 0, "item": 24, "shard": 0,
                                  "shard_name": "t_train_000000.bin", "offset": 192}


def test_every_window_once_per_epoch_and_seed_changes_order(shards):
    files, _ = shards
    loader = TrainLoader(files, T, 4, 2, seed=5)
    w = loader.num_windows  # 55 windows: not a multiple of 4, so batches straddle epochs

    def firsts(ldr, steps):
        return [int(x[i, 0]) for s in range(steps) for x, _ in ldr.batch(s) for i in range(x.shape[0])]

    seen = firsts(loader, 2 * w // 4 + 1)
    assert sorted(seen[:w]) == sorted(set(seen[:w])) and len(set(seen[:w])) == w
    assert sorted(seen[w : 2 * w]) == sorted(seen[:w])  # epoch 1: same windows ...
    assert seen[w : 2 * w] != seen[:w]  # ... in a new order
    assert firsts(TrainLoader(files, T, 4, 2, seed=6), 4) != seen[:16]
    assert firsts(TrainLoader(files, T, 4, 4, seed=5), 4) == seen[:16]


@pytest.mark.parametrize("world, micro", [(1, 1), (1, 6), (2, 2), (2, 3), (3, 4), (4, 1), (6, 2)])
def test_global_batch_independent_of_world_and_micro(shards, world, micro):
    files, _ = shards
    for step in (0, 3, 9):  # 9 crosses into the second epoch
        ref = _global(files, step, 1, 12, seed=1)
        got = _global(files, step, world, micro, seed=1)
        assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])


def test_ranks_are_disjoint(shards):
    files, _ = shards
    loaders = [TrainLoader(files, T, 12, 2, rank=r, world_size=3) for r in range(3)]
    rows = [{int(v) for x, _ in ld.batch(2) for v in x[:, 0]} for ld in loaders]
    assert all(len(a & b) == 0 for i, a in enumerate(rows) for b in rows[i + 1 :])


def test_lookahead_and_previous_match_stream_without_rereading(shards, monkeypatch):
    files, _ = shards
    plain = TrainLoader(files, T, 12, 4, seed=2)
    stream = [plain.next_batch() for _ in range(6)]
    loader = TrainLoader(files, T, 12, 4, seed=2)
    reads = []
    gather = loader._gather
    monkeypatch.setattr(loader, "_gather", lambda step, *a: (reads.append(step), gather(step, *a)))
    for t in range(6):
        if t > 0:
            prev = loader.batch(t - 1)  # two-pass: the previous batch
            assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                       for a, b in zip(prev, stream[t - 1]))
        if t < 5:
            ahead = loader.batch(t + 1)  # two-pass: the look-ahead batch
            assert all(torch.equal(a[0], b[0]) for a, b in zip(ahead, stream[t + 1]))
        cur = loader.batch(t)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(cur, stream[t]))
        assert loader.step == 0  # batch() asks by step and never moves the stream cursor
    assert sorted(reads) == list(range(6))  # each batch read from the shards once


def test_resume_continues_identical_stream(shards):
    files, _ = shards
    a = TrainLoader(files, T, 12, 4, seed=3)
    for _ in range(7):
        a.next_batch()
    state = a.state_dict()
    assert state["step"] == 7 and {"epoch", "shard", "offset", "shard_name", "files", "seed"} <= set(state)
    expected = [a.next_batch() for _ in range(5)]
    b = TrainLoader(files, T, 12, 6, rank=0, world_size=2, seed=3)  # may resume on another world size
    c = TrainLoader(files, T, 12, 6, rank=1, world_size=2, seed=3)
    b.load_state_dict(state)
    c.load_state_dict(state)
    for want in expected:
        got = b.next_batch() + c.next_batch()
        assert torch.equal(torch.cat([x for x, _ in got]), torch.cat([x for x, _ in want]))
    assert a.state_dict(step=3)["step"] == 3


def test_resume_refuses_other_data_or_seed(shards, tmp_path):
    files, _ = shards
    state = TrainLoader(files, T, 12, 4, seed=3).state_dict()
    with pytest.raises(ValueError, match="seed: saved 3, now 4"):
        TrainLoader(files, T, 12, 4, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="global_seqs"):
        TrainLoader(files, T, 24, 4, seed=3).load_state_dict(state)
    write_shard(tmp_path / shard_name("t", "train", 3), np.arange(100))
    with pytest.raises(ValueError, match="files"):
        TrainLoader(files, T, 12, 4, seed=3).load_state_dict(state)


def test_train_loader_errors(shards, tmp_path):
    files, _ = shards
    with pytest.raises(ValueError, match=r"global_seqs=12 must be divisible by micro_seqs\*world_size=5\*1=5"
                                         r".*Valid micro_seqs for world_size=1: \[1, 2, 3, 4, 6, 12\]"):
        TrainLoader(files, T, 12, 5)
    with pytest.raises(ValueError, match=r"valid world sizes divide 12: \[1, 2, 3, 4, 6, 12\]"):
        TrainLoader(files, T, 12, 1, world_size=5)
    with pytest.raises(ValueError, match=r"no train shard files match '.*nothing_\*'.*-m data\.shakespeare"):
        TrainLoader(str(tmp_path / "nothing_*"), T, 12, 4)
    with pytest.raises(ValueError, match="fewer than one window"):
        TrainLoader(files, 1000, 12, 4)
    with pytest.raises(ValueError, match="rank"):
        TrainLoader(files, T, 12, 4, rank=1)


def test_missing_train_shards_name_the_cause(tmp_path):
    with pytest.raises(ValueError, match=r"no train shard files match .*: the folder .*absent does not exi"):
        TrainLoader(str(tmp_path / "absent" / "x_train_*.bin"), T, 4, 4)
    with pytest.raises(ValueError, match=r"no train shard files match .*: the folder .* is empty.*data\.tex"):
        TrainLoader(str(tmp_path / "x_train_*.bin"), T, 4, 4)
    # only a validation shard: the train split was empty; the fix is python -m data.text
    write_shard(tmp_path / shard_name("text", "val", 0), np.arange(100))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError) as e:
        TrainLoader(str(tmp_path / "text_train_*.bin"), T, 4, 4)
    msg = str(e.value)
    assert "no train shard files match" in msg and "text_val_000000.bin" in msg and "no train shard" in msg
    assert "train split was empty" in msg and f"python -m data.text --out {tmp_path} --tokenizer" in msg
    assert f"{tmp_path} holds: notes.txt, text_val_000000.bin" in msg
    # a train pattern that matches validation shards only is refused, for the same reason
    with pytest.raises(ValueError, match=r"matches only validation shards \(text_val_000000\.bin\).*refused"
                                         r".*train split was empty"):
        TrainLoader(str(tmp_path / "*.bin"), T, 4, 4)
    # train shards of another prefix: point at them
    write_shard(tmp_path / shard_name("mine", "train", 0), np.arange(100))
    with pytest.raises(ValueError, match=r"Did you mean data\.train_files=.*mine_train_\*\.bin\?"):
        TrainLoader(str(tmp_path / "text_train_*.bin"), T, 4, 4)
    assert TrainLoader(str(tmp_path / "*.bin"), T, 4, 4).paths[0].name == "mine_train_000000.bin"  # as before
    with pytest.raises(ValueError, match=r"no val shard files match .*Did you mean data\.val_files=.*text_v"):
        ValLoader(str(tmp_path / "other_val_*.bin"), T, 16, 1)


def test_bad_token_in_served_window_names_file(tmp_path):
    toks = np.arange(200)
    toks[77] = 60000
    write_shard(tmp_path / "b_train_000000.bin", toks.astype(np.uint16), vocab_size=65536)
    loader = TrainLoader(str(tmp_path / "b_train_*.bin"), T, 25, 25, shuffle=False)
    with pytest.raises(ShardError, match=r"b_train_000000\.bin: token id 60000 at token 77"):
        loader.batch(0)


def test_val_loader_fixed_tokens_split_across_ranks(shards):
    _, val = shards
    stream = np.concatenate([np.arange(40) + 1000, np.arange(60) + 2000])
    one = ValLoader(val, T, 96, 3)
    assert len(one) == 4
    xs = torch.cat([x for x, _ in one])
    ys = torch.cat([y for _, y in one])
    assert torch.equal(xs.flatten(), torch.from_numpy(stream[:96]))  # the first val_tokens tokens
    assert torch.equal(ys.flatten(), torch.from_numpy(stream[1:97]))
    parts = [ValLoader(val, T, 96, 2, rank=r, world_size=3) for r in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert torch.equal(torch.cat([x for p in parts for x, _ in p]), xs)
    assert torch.equal(torch.cat([x for x, _ in one]), xs)  # iterable more than once


def test_val_loader_errors(shards):
    _, val = shards
    with pytest.raises(ValueError, match="val_tokens=104 needs 105 tokens.*hold 100.*at most 96"):
        ValLoader(val, T, 104, 1)
    with pytest.raises(ValueError, match="multiple of seq_len=8"):
        ValLoader(val, T, 90, 1)
    with pytest.raises(ValueError, match=r"val_tokens/seq_len=12 must be divisible.*Valid micro_seqs"):
        ValLoader(val, T, 96, 5)


# ---- two gloo processes serve the same global batches as one ---------------------------------------------
def _dist_worker(rank, world, store, files, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    loader = TrainLoader(files, T, 12, 3, rank=rank, world_size=world, seed=7)
    for step in range(4):
        mine = torch.cat([x for x, _ in loader.batch(step)])
        parts = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(parts, mine)
        if rank == 0:
            torch.save(torch.cat(parts), f"{out}/step{step}.pt")
    dist.destroy_process_group()


@pytest.mark.dist
def test_two_gloo_processes_match_one(shards, tmp_path):
    files, _ = shards
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "store"), files, str(tmp_path)), nprocs=2, join=True)
    for step in range(4):
        ref = torch.cat([x for x, _ in TrainLoader(files, T, 12, 12, seed=7).batch(step)])
        assert torch.equal(torch.load(tmp_path / f"step{step}.pt"), ref)


def test_bench_loader_script_runs(capsys):
    spec = importlib.util.spec_from_file_location("bench_loader", REPO / "scripts" / "bench_loader.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--train-tokens", "20000", "--seq-len", "64", "--global-seqs", "16",
                       "--micro-seqs", "4", "--steps", "3"]) == 0
    assert "ms wall) per 16x64 global batch" in capsys.readouterr().out
