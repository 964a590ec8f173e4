"""The optimizer a run trains, built the Hydra way from the ``optimizer`` section of the config.

An optimizer config names its class with ``_target_`` and sets that class's keyword arguments::

    _target_: optim.MuonMVR        # or torch.optim.AdamW, or my_module.MyOptimizer (on the Python path)
    label: "MuonMVR (MVR1)"
    lr: 3.0e-3
    momentum: 0.95

Every key is passed to the class except the trainer's own, `TRAINER_KEYS` (`OptimizerSpec`'s fields,
with their defaults there). The class's signature (or, for an optimizer of optim/, its
`UnknownHyperparameter`) decides which keys exist, and its own checks which values work: both run on a
stand-in model before any work (train.py `check_before_work`), and both come back as a `ConfigError` that
names the key. A hyperparameter's default lives in the class (optim/registry.py for ours), never here.

Ranks: an optimizer of optim/ averages gradients over ranks itself (it satisfies `TrainerOptimizer`);
any other is wrapped in `Replicated`, which averages ``.grad`` over ranks before its ``step()``, so 1..N
ranks train alike with one code path.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from harness.config import ConfigError
from optim import ROUTED_GROUPS, HyperparameterError, UnknownHyperparameter, build_param_groups
from optim.dtensor import is_dtensor

ROUTINGS = ("muon", "gluon", "none")  # optim/param_groups.py's two tables, or one group of every parameter


@dataclass(frozen=True)
class OptimizerSpec:
    """``optimizer.*`` split into the trainer's keys (the fields below) and the class's keyword arguments.

    name         how run names refer to it (configs/config.yaml: the config file's name)
    label        how figures and tables name it (configs/config.yaml: the name)
    routing      which param groups the class gets: ``muon`` or ``gluon`` (optim/param_groups.py's tables:
                 hidden / embed / head / vector), or ``none`` (one group of every trainable parameter);
                 None: the class's ``param_routing`` attribute if it has one, else ``none``
    lmos         {group: registered geometry} replacing a routed group's geometry (optim/ optimizers)
    groups       {group: {key: value}}: a routed group's own hyperparameters (lr, weight_decay, estimator...)
    plugins      modules imported before the class (e.g. one that registers an estimator)
    where_taken  {key: value} passed only to a class that takes the key, noted in train.log otherwise: a
                 setting an experiment makes for whichever optimizer runs (experiment=proxy's embed_scale,
                 which only the Gluon family reads)
    """

    target: str
    name: str
    label: str = ""
    routing: str | None = None
    lmos: dict[str, str] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    where_taken: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, oc) -> OptimizerSpec:
        """Read ``cfg.optimizer`` (a DictConfig or a dict)."""
        values = oc if isinstance(oc, dict) else OmegaConf.to_container(oc, resolve=True)
        values = dict(values)
        target = values.pop("_target_", None)
        name = values.get("name") or "?"
        if not isinstance(target, str) or not target:
            raise ConfigError(
                f"optimizer {name} has no _target_: an optimizer config names its class, e.g. "
                "`_target_: optim.MuonMVR` or `_target_: torch.optim.AdamW` (configs/optimizer/muon.yaml)"
            )
        own = {f.name: values.pop(f.name) for f in fields(cls) if f.name in values}
        spec = cls(target=target, **own, kwargs=values)
        spec._check()
        return spec

    @property
    def where(self) -> str:
        """Where the user fixes this optimizer's settings."""
        return f"configs/optimizer/{self.name}.yaml or its overrides"

    def _check(self) -> None:
        if self.routing is not None and self.routing not in ROUTINGS:
            raise _bad("routing", self.routing, f"choose one of {', '.join(ROUTINGS)} ({self.where})")
        for key in ("lmos", "groups"):
            unknown = sorted(set(getattr(self, key)) - set(ROUTED_GROUPS))
            if unknown:
                why = f"{unknown} are not groups; use {list(ROUTED_GROUPS)}"
                raise _bad(key, dict(getattr(self, key)), why)
        if not isinstance(self.plugins, list):
            raise _bad("plugins", self.plugins, "must be a list of module names")


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"config key optimizer.{key}={value!r} is invalid: {why}")


def optimizer_class(spec: OptimizerSpec) -> type:
    """Import the plugins, then the class ``_target_`` names (``module.Class``, as Hydra reads it)."""
    for module in spec.plugins:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any failure to import is the user's to fix
            raise _bad(
                "plugins",
                module,
                f"importing it failed ({type(e).__name__}: {e}); give an importable module (on PYTHONPATH or "
                "in the repository)",
            ) from None
    module_name, _, class_name = spec.target.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except Exception as e:  # noqa: BLE001 - a missing or broken module is the user's to fix
        why = f"importing {module_name} failed ({type(e).__name__}: {e}); put a module of yours on PYTHONPATH"
        raise _bad("_target_", spec.target, why) from None
    target = getattr(module, class_name, None)
    if target is None:
        names = {n.lower(): n for n in dir(module)} if module else {}
        close = [names[c] for c in difflib.get_close_matches(class_name.lower(), list(names), 3, 0.6)]
        hint = f"; did you mean {' or '.join(f'{module_name}.{c}' for c in close)}?" if close else ""
        raise _bad("_target_", spec.target, f"name an optimizer class as module.Class{hint}")
    if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
        raise _bad("_target_", spec.target, "is not a torch.optim.Optimizer subclass")
    return target


def class_kwargs(spec: OptimizerSpec, target: type) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments for ``target``: ``spec.kwargs``, plus each ``where_taken`` key it takes and
    that is not set already. Unknown keys are refused from the signature (a class with ``**kwargs``
    checks its own). Returns (kwargs, notes for train.log)."""
    params = inspect.signature(target.__init__).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if n not in ("self", "params") and p.kind is not p.VAR_KEYWORD]
    kwargs = dict(spec.kwargs)
    if not open_ended:
        unknown = sorted(set(kwargs) - set(named))
        if unknown:
            raise unknown_keys_error(spec, UnknownHyperparameter(unknown, named))
    notes = []
    for key, value in spec.where_taken.items():
        if key in kwargs:
            continue
        if open_ended or key in named:
            kwargs[key] = value
        else:
            notes.append(f"note: optimizer.where_taken.{key} not passed: {spec.target} does not take it")
    return kwargs, notes


def unknown_keys_error(spec: OptimizerSpec, e: UnknownHyperparameter) -> ConfigError:
    hints = [f"optimizer.{n} (did you mean {' or '.join(e.close[n])}?)" if e.close[n] else f"optimizer.{n}"
             for n in e.names]
    return ConfigError(
        f"config key(s) {', '.join(hints)}: {spec.target} does not take them ({spec.where}); it takes: "
        f"{', '.join(e.known)}; the trainer's own keys: {', '.join(TRAINER_KEYS)}"
    )


TRAINER_KEYS = tuple(f.name for f in fields(OptimizerSpec) if f.name not in ("target", "kwargs"))


def routed_groups(spec: OptimizerSpec, target: type, model: torch.nn.Module) -> list[dict[str, Any]]:
    """The param groups ``target`` gets for ``model`` (see `OptimizerSpec.routing`)."""
    routing = spec.routing or getattr(target, "param_routing", "none")
    if routing == "none":
        if spec.lmos or spec.groups:
            raise _bad(
                "groups" if spec.groups else "lmos",
                dict(spec.groups or spec.lmos),
                f"needs routed groups; set optimizer.routing to muon or gluon ({spec.where})",
            )
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    return build_param_groups(model, routing, lmos=spec.lmos, overrides=spec.groups)


def build_optimizer(oc, model: torch.nn.Module, grad_clip: float | None = None) -> tuple[Any, list[str]]:
    """The optimizer ``oc`` (``cfg.optimizer``) configures, for ``model``, as a `TrainerOptimizer`.
    Every error names the optimizer.* key. Returns (optimizer, notes for train.log)."""
    spec = OptimizerSpec.from_config(oc)
    target = optimizer_class(spec)
    kwargs, notes = class_kwargs(spec, target)
    try:
        groups = routed_groups(spec, target, model)
        try:
            optimizer = target(groups, **kwargs)
        except UnknownHyperparameter as e:  # a class with **kwargs (ours): drop where_taken keys it refused
            dropped = set(spec.where_taken) - set(spec.kwargs)
            if not set(e.names) <= dropped:
                raise
            kwargs = {k: v for k, v in kwargs.items() if k not in e.names}
            notes += [f"note: optimizer.where_taken.{k} not passed: {spec.target} does not take it"
                      for k in e.names]
            optimizer = target(groups, **kwargs)
    except UnknownHyperparameter as e:
        raise unknown_keys_error(spec, e) from None
    except HyperparameterError as e:
        raise _bad(e.name, e.value, f"{e.why} ({spec.where})") from None
    except (ValueError, TypeError) as e:  # the class's own checks (torch: "Invalid learning rate: -1")
        raise ConfigError(f"optimizer {spec.name} ({spec.target}, {spec.where}): {e}") from None
    for group in optimizer.param_groups:  # the trainer's schedule scales every group's initial lr
        group.setdefault("initial_lr", group["lr"])
    if not isinstance(optimizer, TrainerOptimizer):
        optimizer = Replicated(optimizer)
    optimizer.grad_clip = grad_clip
    return optimizer, notes


@runtime_checkable
class TrainerOptimizer(Protocol):
    """What train.py asks of an optimizer beyond torch.optim.Optimizer's ``step``, ``param_groups``,
    ``state``, ``state_dict`` and ``load_state_dict``; optim/'s `ShardedOptimizer` has it all and
    averages gradients over ranks itself."""

    reference_source: str  # "none" | "prev_step" | "prev_params" | "prev_batch": what the loop hands over
    grad_evals_per_step: int  # gradient passes a step costs: 1 or 2
    grad_clip: float | None  # clip the global norm of every averaged gradient pass

    def update_last_grad(self) -> None: ...

    def update_lookahead_grad(self) -> None: ...

    def load_sharded_state_dicts(self, state_dicts: list[dict[str, Any]]) -> None: ...


class Replicated:
    """Any torch optimizer under the trainer's protocol, on 1..N ranks: ``step()`` averages every
    ``.grad`` over ranks (one flat all-reduce; a missing ``.grad`` counts as zero on more than one rank;
    nothing under sharding=fsdp2, where FSDP2 averaged each gradient onto its shard),
    clips the global norm if ``grad_clip`` is set (``torch.nn.utils.clip_grad_norm_``), then steps the
    wrapped optimizer. Every rank holds the same whole state, so a checkpoint of any rank resumes on any
    number of ranks. One gradient pass a step."""

    reference_source = "none"
    grad_evals_per_step = 1

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.grad_clip: float | None = None

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    def update_last_grad(self) -> None:
        """No reference gradient: a no-op (never called, reference_source is "none")."""

    update_lookahead_grad = update_last_grad

    @torch.no_grad()
    def step(self) -> None:
        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world > 1 and not any(is_dtensor(p) for p in params):  # fsdp2: FSDP2 averaged them
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
                offset += p.numel()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip)
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def load_sharded_state_dicts(self, state_dicts: list[dict[str, Any]]) -> None:
        """Every saved rank holds the same whole state: load the first."""
        self.optimizer.load_state_dict(state_dicts[0])
