"""examples/fsdp2_dropin.py, the drop-in FSDP2 example of docs/fsdp2.md, run as a researcher would: under
torchrun on 2 gloo ranks, a run that saves a DCP checkpoint at step SAVE_AT and goes on to STEPS equals, loss
for loss, a second launch that resumes from that checkpoint, for the two-pass Gluon-MVR-1 (the look-ahead
loop; the one-pass path is tests/test_optim_fsdp.py's); only rank 0 prints; nothing is written outside the
folders it is given. Without torchrun (one process, its own group of one) it resumes the 2-rank checkpoint;
a checkpoint of another optimizer is refused before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch.distributed as dist
from helpers import torchrun

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "fsdp2_dropin.py"
STEPS, SAVE_AT = 4, 2
TINY = ["--steps", str(STEPS), "--batch", "4", "--seq", "8", "--width", "16"]
OPTIMIZERS = ("gluon_mvr1",)  # two passes (update_lookahead_grad); the one-pass path: test_optim_fsdp.py


def launch(tmp: Path, args: list[str]) -> subprocess.Popen:
    """The example on 2 gloo ranks under torchrun."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(torchrun(2, SCRIPT, *args), cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{proc.args} did not finish in 300 s")
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{err[-4000:]}"
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, tuple[str, dict]]]]:
    """Per optimizer: "full" (saves at SAVE_AT, goes on to STEPS) and "resumed" (from that checkpoint), each
    (stdout, {step: loss}). The two optimizers' launches run side by side (a launch is mostly imports)."""
    tmp = tmp_path_factory.mktemp("dropin")
    results: dict[str, dict[str, tuple[str, dict]]] = {name: {} for name in OPTIMIZERS}
    for phase in ("full", "resumed"):
        procs = {}
        for name in OPTIMIZERS:
            where = ["--save-at", str(SAVE_AT), "--save-dir", f"ckpt_{name}"]
            if phase == "resumed":
                where = ["--resume", f"ckpt_{name}"]
            out_json = f"{name}_{phase}.json"
            procs[name] = launch(tmp, ["--optimizer", name, *TINY, *where, "--out-json", out_json])
        for name, proc in procs.items():
            stdout = finish(proc)
            record = json.loads((tmp / f"{name}_{phase}.json").read_text())
            assert record["world_size"] == 2 and record["optimizer"] == name
            results[name][phase] = (stdout, {int(k): v for k, v in record["losses"].items()})
    return tmp, results


@pytest.mark.dist
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_from_checkpoint_continues_exactly(runs, name: str) -> None:
    _, results = runs
    (full_out, full), (resumed_out, resumed) = results[name]["full"], results[name]["resumed"]
    assert sorted(full) == list(range(1, STEPS + 1)), full
    assert sorted(resumed) == list(range(SAVE_AT + 1, STEPS + 1)), resumed
    for step, loss in resumed.items():
        assert loss == full[step], (name, step, loss, full[step])
    assert full[STEPS] < full[1], (name, full)  # it trains
    # rank 0 alone prints: one line a step, the value the JSON holds
    for out, losses in ((full_out, full), (resumed_out, resumed)):
        lines = re.findall(r"^step (\d+)/(\d+) loss (\S+)$", out, flags=re.M)
        assert [int(s) for s, _, _ in lines] == sorted(losses), out
        assert all(float(v) == pytest.approx(losses[int(s)], abs=1e-6) for s, _, v in lines), out


@pytest.mark.dist
def test_writes_only_what_it_is_given(runs) -> None:
    tmp, _ = runs
    files = {p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()}
    others = {f for f in files if not f.startswith("ckpt_")}
    assert others == {f"{n}_{phase}.json" for n in OPTIMIZERS for phase in ("full", "resumed")}, files
    for name in OPTIMIZERS:  # one DCP file per rank and the metadata
        assert {f for f in files if f.startswith(f"ckpt_{name}/")} == {
            f"ckpt_{name}/.metadata", f"ckpt_{name}/__0_0.distcp", f"ckpt_{name}/__1_0.distcp"}


def load_example():
    spec = importlib.util.spec_from_file_location("fsdp2_dropin", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.dist
def test_one_process_resumes_the_two_rank_checkpoint(runs, monkeypatch, capsys) -> None:
    """No torchrun: the script makes a group of one itself, and DCP re-shards the 2-rank checkpoint onto it.
    Same global batches, so the losses agree up to float32 reduction order."""
    tmp, results = runs
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    out_json = tmp / "one_process.json"
    try:
        load_example().main(["--optimizer", "gluon_mvr1", *TINY, "--resume", str(tmp / "ckpt_gluon_mvr1"),
                             "--out-json", str(out_json)])
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        out_json_text = out_json.read_text() if out_json.exists() else "{}"
        out_json.unlink(missing_ok=True)
    record = json.loads(out_json_text)
    assert record["world_size"] == 1
    full = results["gluon_mvr1"]["full"][1]
    for step, loss in record["losses"].items():
        assert loss == pytest.approx(full[int(step)], rel=1e-5), (step, loss, full[int(step)])
    assert capsys.readouterr().out.count(f"step {STEPS}/{STEPS} loss") == 1


@pytest.mark.dist
def test_checkpoint_of_another_optimizer_is_refused(runs, monkeypatch, capsys) -> None:
    tmp, _ = runs
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        load_example().main(["--optimizer", "muon_mvr1", *TINY, "--resume", str(tmp / "ckpt_gluon_mvr1")])
    assert exit_info.value.code == 2
    assert "was saved with --optimizer gluon_mvr1" in capsys.readouterr().err
    assert not dist.is_initialized()  # refused before any work
