"""Whether a run followed an experiment's protocol, read from the experiment's own config.

The protocol of ``experiment=<name>`` is the config that ``python train.py experiment=<name>`` composes
(configs/experiment/<name>.yaml and the model, data and batch it picks): no second list of its values.
It fixes every key that decides what is trained (harness/config.py: all but RESUME_FREE), and the
gradient passes a step its ``figure.max_passes`` allows, except what an entrant chooses (ENTRANT):

- the optimizer section (what is compared) and the seed;
- ``train.steps``: the optimization track asks how few steps reach its target, and its pairwise rule
  prices a difference in steps (study/stats.py), so a configuration may run fewer (or more) steps than
  the baseline's; everything else of the schedule is fixed, as a fraction of the steps;
- where the data lie on this machine (``data.train_files``, ``data.val_files``): the data set is named
  by ``data.name`` instead, which the protocol fixes although a resume may rename it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config import compose_config, flat_config, resume_free, with_model_target

ENTRANT = ("optimizer", "seed", "train.steps", "data.train_files", "data.val_files")
NAMED = ("data.name",)  # resume-free, but the only key that says which data set the paths hold
PASSES = "gradient passes a step"  # the key a run with more passes than figure.max_passes differs in
ABSENT = "(not set)"


@dataclass(frozen=True)
class Protocol:
    experiment: str
    fixed: dict[str, Any]  # dotted key -> the value every run must have
    max_passes: int | None  # figure.max_passes: the gradient passes a step allowed (None: any)


@dataclass(frozen=True)
class Difference:
    """The first way a run departs from a protocol: ``key`` has ``found`` where the protocol has
    ``expected`` (ABSENT where one side lacks the key)."""

    key: str
    expected: Any
    found: Any


def fixed(key: str) -> bool:
    """Whether a protocol fixes this dotted key (see the module's docstring)."""
    if any(key == k or key.startswith(k + ".") for k in ENTRANT):
        return False
    return key in NAMED or not resume_free(key)


def protocol(experiment: str) -> Protocol:
    """The protocol ``experiment=<experiment>`` declares, composed as train.py composes it."""
    cfg = compose_config([f"experiment={experiment}"])
    keys = {k: v for k, v in flat_config(cfg).items() if fixed(k)}
    return Protocol(experiment, keys, cfg.figure.max_passes)


def first_difference(proto: Protocol, config: dict, passes: int) -> Difference | None:
    """The first key (in the protocol's order, then keys only the run has) whose value in a run's
    resolved ``config`` (its config.yaml as a dict) is not the protocol's, else the passes a step when
    more than the protocol allows; None when the run followed the protocol."""
    found = {k: v for k, v in with_model_target(flat_config(config)).items() if fixed(k)}
    for key in [*proto.fixed, *(k for k in found if k not in proto.fixed)]:
        expected, got = proto.fixed.get(key, ABSENT), found.get(key, ABSENT)
        if expected != got:
            return Difference(key, expected, got)
    if proto.max_passes is not None and passes > proto.max_passes:
        return Difference(PASSES, proto.max_passes, passes)
    return None
