"""`python -m data.text`: own text -> train/val shards that decode back to the text, never an empty split,
no silent overwrite, clear input errors, and a printed override line that the trainer accepts."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from helpers.trainer_utils import REPO, compose_cfg, read_metrics

from data import text
from data.shards import EOT, find_shards, read_shard

WORDS = ["the", "quick", "brown", "fox", "naïve", "café", "Ünïcode", "😀", "日本語", "\n", "\n\n", "  ",
         "42,", "end.", "<|endoftext|>"]
TINY = ["model.n_layer=1", "model.n_head=2", "model.head_dim=16", "data.seq_len=32", "batch.global_seqs=4",
        "train.steps=2", "train.val_every=0"]


def _text(n_words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return f"Document {seed}: " + " ".join(rng.choice(WORDS, size=n_words))


def _write(path, content: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def _split(out, split, prefix="text", vocab=256) -> np.ndarray:
    paths = find_shards(out / f"{prefix}_{split}_*.bin")
    return np.concatenate([read_shard(p, vocab) for p in paths]) if paths else np.zeros(0, np.uint16)


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = text.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def gpt2_available():
    from data.tokenizer import get_gpt2_encoding, ranks_candidates

    if not any(p.is_file() for p in ranks_candidates()):
        pytest.skip("GPT-2 BPE ranks not available offline (run `python -m data.tokenizer` once)")
    get_gpt2_encoding.cache_clear()
    return get_gpt2_encoding()


# ---- round trips ------------------------------------------------------------------------------------------
def test_bytes_val_fraction_round_trip(tmp_path, capsys):
    docs = [_text(900, i) for i in range(3)]
    files = [_write(tmp_path / f"in/{name}.txt", d) for name, d in zip("bca", docs)]  # order as given
    out = tmp_path / "shards"
    rc, stdout, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.25", *files)
    assert rc == 0, err
    train, val = _split(out, "train"), _split(out, "val")
    stream = np.concatenate([np.frombuffer(b"\xff" + d.encode(), np.uint8) for d in docs]).astype(np.uint16)
    assert len(val) == round(len(stream) * 0.25) and np.array_equal(np.concatenate([train, val]), stream)
    assert text.decode_documents(np.concatenate([train, val]), "bytes") == docs
    assert train[0] == text.BYTE_SEP and (stream == 255).sum() == len(docs)  # separator only between docs
    assert sorted(p.name for p in out.iterdir()) == ["text_train_000000.bin", "text_val_000000.bin"]
    seq_len, val_tokens = text.loader_settings(len(train), len(val), 1024)
    assert stdout == (f"data.name=text data.train_files={out}/text_train_*.bin "
                      f"data.val_files={out}/text_val_*.bin data.seq_len={seq_len} "
                      f"data.val_tokens={val_tokens} model.vocab_size=256\n")
    assert seq_len == 1024 and 0 < val_tokens <= len(val) - 1 and val_tokens % 1024 == 0
    assert "bytes tokens" in err and "train: " in err  # progress and summary on stderr


def test_gpt2_round_trip_and_documents(tmp_path, capsys):
    enc = gpt2_available()
    docs = [_text(2500, i) for i in range(4)]
    files = [_write(tmp_path / f"d{i}.md", d) for i, d in enumerate(docs)]
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "--out", out, "--tokenizer", "gpt2", "--val-fraction", "0.2",
                           "--shard-tokens", "3000", *files)
    assert rc == 0, err
    train, val = _split(out, "train", vocab=50257), _split(out, "val", vocab=50257)
    ref = np.concatenate([[EOT] + enc.encode_ordinary(d) for d in docs])
    assert np.array_equal(np.concatenate([train, val]), ref)
    assert (ref == EOT).sum() == len(docs)  # "<|endoftext|>" inside the text stays plain text
    assert text.decode_documents(ref, "gpt2") == docs
    assert len(find_shards(out / "text_train_*.bin")) == -(-len(train) // 3000)
    assert all(len(read_shard(p)) == 3000 for p in find_shards(out / "text_train_*.bin")[:-1])
    assert "model.vocab_size" not in stdout and "data.val_files=" in stdout


def test_val_files_folders_globs_and_shards(tmp_path, capsys):
    root = tmp_path / "corpus"
    a = _write(root / "b_part/a.txt", _text(400, 1))
    b = _write(root / "a_part/z.MD", _text(400, 2))
    c = _write(root / "a_part/notes.text", _text(400, 3))
    other = _write(root / "a_part/table.csv", "x,y\n1,2\n")
    _write(root / ".git/HEAD.txt", "hidden, skipped")
    _write(root / "a_part/.hidden.txt", "hidden, skipped")
    (root / "empty.txt").write_text("")
    val = _write(tmp_path / "held_out.txt", _text(700, 4))
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--shard-tokens", "1000", root,
                           "--val-files", val)
    assert rc == 0, err
    assert "skipped 1 empty file(s)" in err
    train_docs = text.decode_documents(_split(out, "train"), "bytes")
    assert train_docs == [p.read_text() for p in (c, b, a)]  # sorted: a_part/notes.text, a_part/z.MD, ...
    assert text.decode_documents(_split(out, "val"), "bytes") == [val.read_text()]
    assert len(find_shards(out / "text_train_*.bin")) == -(-len(_split(out, "train")) // 1000)
    assert len(find_shards(out / "text_val_*.bin")) == -(-len(_split(out, "val")) // 1000) > 1
    rc, _, err = _run(capsys, "--out", tmp_path / "all", "--tokenizer", "bytes", "--glob", "*", root,
                      "--val-files", val)
    assert rc == 0, err
    assert other.read_text() in text.decode_documents(_split(tmp_path / "all", "train"), "bytes")



# ---- --val-files: one name (or a comma-separated list) per use, positional inputs anywhere ----------------
@pytest.fixture
def val_corpus(tmp_path):
    docs = {name: _write(tmp_path / name, _text(900, i))
            for i, name in enumerate(["v1.txt", "v2.txt", "a.txt", "b/x.txt", "b/y.md"])}
    return tmp_path, docs


def _splits_as_text(out) -> tuple[list[str], list[str]]:
    return (text.decode_documents(_split(out, "train"), "bytes"),
            text.decode_documents(_split(out, "val"), "bytes"))


@pytest.mark.parametrize("form", ["spec_order", "repeated", "commas", "commas_equals", "inputs_first",
                                  "inputs_around", "double_dash"])
def test_val_files_forms(val_corpus, capsys, form):
    root, d = val_corpus
    v1, v2, a, b = d["v1.txt"], d["v2.txt"], d["a.txt"], root / "b"
    two_val = form not in ("spec_order", "inputs_first", "inputs_around", "double_dash")
    argv = {
        "spec_order": ["--val-files", v1, a, b],  # the spec's literal order
        "repeated": ["--val-files", v1, "--val-files", v2, a, b],
        "commas": ["--val-files", f"{v1},{v2}", a, b],
        "commas_equals": [f"--val-files={v1},{v2}", a, b],
        "inputs_first": [a, b, "--val-files", v1],
        "inputs_around": [a, "--val-files", v1, b],
        "double_dash": ["--val-files", v1, "--", a, b],
    }[form]
    out = root / "out"
    rc, stdout, err = _run(capsys, "--out", out, "--tokenizer", "bytes", *argv)
    assert rc == 0, err
    train, val = _splits_as_text(out)
    assert train == [p.read_text() for p in (a, d["b/x.txt"], d["b/y.md"])]
    assert val == [p.read_text() for p in ((v1, v2) if two_val else (v1,))]
    assert stdout.startswith("data.name=text ")


def test_val_files_name_with_a_comma_is_taken_whole(tmp_path, capsys):
    a = _write(tmp_path / "a.txt", _text(900, 0))
    odd = _write(tmp_path / "held,out.txt", _text(900, 1))
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-files", odd, a)
    assert rc == 0, err
    assert _splits_as_text(out) == ([a.read_text()], [odd.read_text()])


def test_val_files_empty_name_is_refused(val_corpus, capsys):
    root, d = val_corpus
    for value in (f"{d['v1.txt']},", f"{d['v1.txt']},,{d['v2.txt']}", ""):
        with pytest.raises(SystemExit) as exc:
            text.main(["--out", str(root / "out"), "--tokenizer", "bytes", "--val-files", value,
                       str(d["a.txt"])])
        assert exc.value.code == 2
        assert "empty name in" in capsys.readouterr().err
    assert not (root / "out").exists()


@pytest.mark.parametrize("case", ["same_name", "other_spelling", "folder_holds_input"])
def test_a_file_named_for_both_splits_goes_to_validation(val_corpus, capsys, case):
    """--val-files wins: a file the train inputs also name (or a folder of them holds) is held out of
    training, with a line saying so and where every file went."""
    root, d = val_corpus
    v1, a, b, x = d["v1.txt"], d["a.txt"], root / "b", d["b/x.txt"]
    argv, named = {
        "same_name": (["--val-files", v1, a, v1], v1),  # the spec's order, v1.txt named twice
        "other_spelling": (["--val-files", f"{v1},{root / 'b' / '..' / 'a.txt'}", a, b], "a.txt"),
        "folder_holds_input": (["--val-files", b, a, x], x),
    }[case]
    rc, stdout, err = _run(capsys, "--out", root / "out", "--tokenizer", "bytes", *argv)
    assert rc == 0, err
    assert "held out of training: 1 file(s) that --val-files names and the train inputs also hold" in err
    assert str(named) in err and "train: " in err and "validation: " in err
    train, val = _splits_as_text(root / "out")
    held = named.read_text() if isinstance(named, type(v1)) else a.read_text()
    assert held in val and held not in train


def test_a_val_file_inside_an_input_folder_is_held_out_of_training(val_corpus, capsys):
    """`--val-files books/persuasion.txt books/`: the folder trains on its other files, with a note."""
    root, d = val_corpus
    x, b = d["b/x.txt"], root / "b"
    rc, _, err = _run(capsys, "--out", root / "out", "--tokenizer", "bytes", "--val-files", x, d["a.txt"], b)
    assert rc == 0, err
    assert "held out of training: 1 file(s) that --val-files names and the train inputs also hold" in err
    assert str(x) in err
    train, val = _splits_as_text(root / "out")
    assert val == [x.read_text()] and x.read_text() not in train
    assert sorted(train) == sorted([d["a.txt"].read_text(), d["b/y.md"].read_text()])


def test_help_documents_val_files_forms(capsys):
    with pytest.raises(SystemExit):
        text.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--val-files FILE[,FILE...]" in help_text
    assert "in `--val-files v.txt a.txt b/` v.txt is validation and a.txt and b/ are train" in help_text
    assert "--val-files v1.txt --val-files v2.txt" in help_text and "v1.txt,v2.txt" in help_text

# ---- the line trains ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokenizer", ["bytes", "gpt2"])
def test_cli_line_trains(tmp_path, tokenizer):
    import train

    if tokenizer == "gpt2":
        gpt2_available()
    words = 1500 if tokenizer == "bytes" else 6000
    for i in range(2):
        _write(tmp_path / f"books/{i}.txt", _text(words, i))
    out = tmp_path / "shards"
    proc = subprocess.run([sys.executable, "-m", "data.text", "--out", str(out), "--tokenizer", tokenizer,
                           "--val-fraction", "0.3", str(tmp_path / "books")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1, proc.stdout  # stdout is the override line and nothing else
    line = proc.stdout.strip()
    assert ("model.vocab_size=256" in line) == (tokenizer == "bytes")
    assert f"python train.py {line}" in proc.stderr
    cfg = compose_cfg(line.split() + TINY + [f"run_dir={tmp_path / 'run'}"])
    assert cfg.data.name == "text" and cfg.data.seq_len == 32 and cfg.data.val_tokens > 0
    summary = train.train(cfg)
    metrics = read_metrics(tmp_path / "run")
    assert summary["tokens"] > 0 and summary["tokens"] % (4 * 32) == 0
    assert np.isfinite(metrics[-1]["val_loss"]) and metrics[-1]["step"] == 2


def test_odd_out_path_is_flagged(tmp_path, capsys):
    f = _write(tmp_path / "a.txt", _text(3000, 0))
    rc, stdout, err = _run(capsys, "--out", tmp_path / "my shards", "--tokenizer", "bytes", "--val-fraction",
                           "0.2", f)
    assert rc == 0 and "my shards/text_train_*.bin" in stdout
    assert "characters that the shell or Hydra treat specially: quote each override" in err


# ---- never an empty split ----------------------------------------------------------------------------------
def test_too_small_split_fails_before_writing(tmp_path, capsys):
    f = _write(tmp_path / "small.txt", "x" * 3000)
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.1", f)
    assert rc == 2 and stdout == ""
    assert "2,701 train and 300 validation tokens" in err and "at least 2,049" in err
    assert "too small: validation 300" in err and "Nothing was written" in err
    assert "--val-files" in err and "add more text (4,098 tokens in all" in err
    assert not out.exists()
    big = _write(tmp_path / "big.txt", "y" * 10_000)
    rc, _, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.1", big)
    assert rc == 2 and "any from 0.205 to 0.795 works" in err and not out.exists()
    rc, _, err = _run(capsys, "--out", out, "--tokenizer", "bytes", big, "--val-files", f)
    assert rc == 0, err  # 10,001 train and 3,001 validation tokens
    tiny = _write(tmp_path / "tiny.txt", "z" * 1000)
    rc, _, err = _run(capsys, "--out", tmp_path / "o2", "--tokenizer", "bytes", tiny, "--val-files", big)
    assert rc == 2 and "1,001 train and 10,001 validation" in err and "too small: train 1,001" in err
    assert "--val-fraction 0.1" in err and not (tmp_path / "o2").exists()
    # a lowered --min-split-tokens allows short splits; the line then uses a seq_len that fits them
    rc, stdout, err = _run(capsys, "--out", tmp_path / "o3", "--tokenizer", "bytes", "--val-fraction", "0.1",
                           "--min-split-tokens", "100", f)
    assert rc == 0 and "data.seq_len=256 data.val_tokens=256 " in stdout and "data.seq_len=256" in err


def test_loader_settings():
    assert text.loader_settings(10**6, 40 * 1024 + 1, 1024) == (1024, 32 * 1024)  # 16 sequences a multiple
    assert text.loader_settings(10**6, 7 * 1024 + 5, 1024) == (1024, 4 * 1024)  # a power of two below 16
    assert text.loader_settings(10**6, 2049, 1024) == (1024, 2048)
    assert text.loader_settings(10**6, 300, 1024) == (256, 256)  # short split: smaller seq_len
    assert text.loader_settings(100, 10**6, 64) == (64, 15616 * 64)


# ---- overwriting -------------------------------------------------------------------------------------------
def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    f = _write(tmp_path / "a.txt", _text(3000, 0))
    out = tmp_path / "out"
    assert _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.2",
                "--shard-tokens", "2500", f)[0] == 0
    before = sorted(p.name for p in out.iterdir())
    assert len(before) > 3
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    rc, _, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.2", f)
    assert rc == 2 and "already holds shards with prefix 'text': text_train_000000.bin" in err
    assert "--force" in err and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    rc, _, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.2", "--prefix",
                      "other", f)
    assert rc == 0, err  # another prefix is not an overwrite
    rc, _, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.2", "--force", f)
    assert rc == 0 and "--force: deleting" in err
    names = sorted(p.name for p in out.iterdir() if p.name.startswith("text_"))
    assert names == ["text_train_000000.bin", "text_val_000000.bin"]  # no stale shard left for the glob
    assert text.decode_documents(np.concatenate([_split(out, "train"), _split(out, "val")]), "bytes") == \
        [f.read_text()]


# ---- bad input ---------------------------------------------------------------------------------------------
def test_bad_input_errors(tmp_path, capsys):
    f = _write(tmp_path / "a.txt", _text(3000, 0))
    out = tmp_path / "out"
    base = ["--out", out, "--tokenizer", "bytes"]
    cases = [
        ([*base, "--val-fraction", "0.1", f, tmp_path / "missing.txt"], "not found: .*missing.txt"),
        ([*base, "--val-fraction", "0.1"], "no input files or folders given"),
        ([*base, "--val-fraction", "1", f], "strictly between 0 and 1, got 1.0"),
        ([*base, "--val-fraction", "0", f], "strictly between 0 and 1, got 0.0"),
        ([*base, "--val-fraction", "-0.2", f], "strictly between 0 and 1"),
        ([*base, "--val-files", f], "no input files or folders given.*the option takes one argument"),
        ([*base, f, "--val-files", f], "every train input is also a --val-files file"),
        ([*base, "--val-fraction", "0.1", tmp_path / "none"], "not found"),
        ([*base, "--val-fraction", "0.1", "--shard-tokens", "0", f], "--shard-tokens must be in"),
        ([*base, "--val-fraction", "0.1", "--prefix", "a/b", f], "--prefix must be a plain"),
        ([*base, "--val-fraction", "0.1", "--min-split-tokens", "1", f], "--min-split-tokens must be"),
        (["--out", f, "--tokenizer", "bytes", "--val-fraction", "0.1", f], "exists and is not a folder"),
    ]
    (tmp_path / "emptydir").mkdir()
    _write(tmp_path / "pdfs/x.pdf", "not text")
    cases += [([*base, "--val-fraction", "0.1", tmp_path / "emptydir"], "hold no file matching.*--glob"),
              ([*base, "--val-fraction", "0.1", tmp_path / "pdfs"], "pdfs hold no file matching")]
    (tmp_path / "e.txt").write_text("")
    cases += [([*base, "--val-fraction", "0.1", tmp_path / "e.txt"], "are empty .*; nothing to tokenize")]
    for argv, pattern in cases:
        rc, stdout, err = _run(capsys, *argv)
        assert rc == 2 and stdout == "", argv
        assert re.search(pattern, err), (argv, err)
        assert err.startswith("python -m data.text: error: "), err
    assert not out.exists()
    with pytest.raises(SystemExit):  # argparse: exactly one of the split options
        text.main(["--out", str(out), "--tokenizer", "bytes", "--val-fraction", "0.1", "--val-files", str(f),
                   str(f)])
    with pytest.raises(SystemExit):
        text.main(["--out", str(out), "--tokenizer", "words", "--val-fraction", "0.1", str(f)])


def test_non_utf8_is_replaced_and_named(tmp_path, capsys):
    good = _write(tmp_path / "good.txt", _text(1500, 0) + "\x00 NUL is text too")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(("café " * 1000).encode("latin-1"))
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "--out", out, "--tokenizer", "bytes", "--val-fraction", "0.4", good, bad)
    assert rc == 0, err
    assert "1 file(s) are not valid UTF-8" in err and "latin1.txt (first bad byte at offset 3)" in err
    assert "errors='replace'" in err
    docs = text.decode_documents(np.concatenate([_split(out, "train"), _split(out, "val")]), "bytes")
    assert docs == [good.read_text(), "caf\ufffd " * 1000]


def test_gpt2_missing_ranks_names_the_fix(tmp_path, capsys, monkeypatch):
    from data import tokenizer

    monkeypatch.setattr(tokenizer, "_tiktoken_cached_gpt2", lambda: None)
    monkeypatch.setattr(tokenizer, "DEFAULT_RANKS_PATH", tmp_path / "absent.tiktoken")
    monkeypatch.setattr(tokenizer.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("GPT2_BPE_RANKS", raising=False)

    def no_registry(*args, **kwargs):
        raise tokenizer.FetchError("`pip download --no-deps openai-whisper==20250625` failed (exit code 1)")

    # (a real unreachable network: tests/test_data_tokenizer.py)
    monkeypatch.setattr(tokenizer, "pip_download", no_registry)
    tokenizer.get_gpt2_encoding.cache_clear()
    try:
        f = _write(tmp_path / "a.txt", _text(3000, 0))
        rc, _, err = _run(capsys, "--out", tmp_path / "out", "--tokenizer", "gpt2", "--val-fraction", "0.1",
                          f)
    finally:
        tokenizer.get_gpt2_encoding.cache_clear()
    assert rc == 2 and "not fetchable" in err and "GPT2_BPE_RANKS" in err and "--tokenizer bytes" in err
    assert not (tmp_path / "out").exists()
