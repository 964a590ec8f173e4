"""Paper-style parameter routing (which parameter takes which geometry) and the coverage check.

| parameter                                        | group  | routing "muon" | routing "gluon" |
|--------------------------------------------------|--------|----------------|-----------------|
| hidden matrices (ndim ≥ 2, not below)            | hidden | spectral      | spectral       |
| ``nn.Embedding`` params (a tied head with them)  | embed  | adamw         | sign           |
| the untied head that ``model.output_head`` names | head   | adamw         | sign           |
| everything with ndim < 2 (biases, norm gains)    | vector | adamw         | adamw          |

A model names the attribute that holds its output head in ``output_head`` (default ``lm_head``).
Tied weights (the same tensor reachable under two names) appear once; frozen parameters are left out.
``lmos`` replaces the geometry of any group (``ROUTED_GROUPS``) by a registered one, e.g.
``{"hidden": "my_geometry"}`` (the trainer's ``optimizer.lmos``; a name that is not registered is a
:class:`~optim.validation.HyperparameterError` for ``lmos.<group>``); the head follows ``lmos["embed"]``
unless ``lmos["head"]`` is given. ``overrides`` sets a group's own hyperparameters, e.g.
``{"embed": {"lr": 0.7}}`` (the trainer's ``optimizer.groups``): the optimizer reads a key a group sets
before its own default, and the trainer's schedule scales each group's lr by the same factor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from torch import Tensor, nn

from .validation import HyperparameterError

ROUTED_GROUPS = ("hidden", "embed", "head", "vector")


def build_param_groups(
    model: nn.Module,
    routing: Literal["muon", "gluon"],
    lmos: dict[str, str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Param groups ``[{"name": ..., "lmo": ..., "params": [...]}, ...]`` for ``MuonMVR`` (``routing=
    "muon"``) or ``GluonMVR`` (``routing="gluon"``), the geometries of the table above unless ``lmos``
    names others; empty groups are dropped. Checks coverage."""
    from .registry import GEOMETRIES

    if routing not in ("muon", "gluon"):
        raise ValueError(f"Invalid routing: {routing!r} (must be 'muon' or 'gluon')")
    lmos = dict(lmos or {})
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    for what, given in (("lmos", lmos), ("groups", overrides)):
        unknown = sorted(set(given) - set(ROUTED_GROUPS))
        if unknown:
            raise ValueError(f"Invalid {what}: {unknown} are not groups (use {list(ROUTED_GROUPS)})")
    for group, lmo in lmos.items():
        if lmo not in GEOMETRIES:
            raise HyperparameterError(
                f"lmos.{group}",
                lmo,
                f"choose a registered geometry: {sorted(GEOMETRIES)} (optim/README.md, 'Adding an estimator "
                "or a geometry')",
            )
    for name, hp in overrides.items():
        if "params" in hp or "lmo" in hp:
            raise ValueError(f"Invalid groups: {name} sets 'params'/'lmo'; route with lmos instead")
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    head_module = getattr(model, getattr(model, "output_head", "lm_head"), None)
    head_ids = {id(p) for p in head_module.parameters()} if isinstance(head_module, nn.Module) else set()
    hidden: list[Tensor] = []
    embed: list[Tensor] = []
    head: list[Tensor] = []
    vector: list[Tensor] = []
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        if p.ndim < 2:
            vector.append(p)
        elif id(p) in embedding_ids:
            embed.append(p)
        elif id(p) in head_ids or "lm_head" in name:
            head.append(p)
        else:
            hidden.append(p)
    embed_lmo = lmos.get("embed", "sign" if routing == "gluon" else "adamw")
    groups = [
        {"name": "hidden", "lmo": lmos.get("hidden", "spectral"), "params": hidden},
        {"name": "embed", "lmo": embed_lmo, "params": embed},
        {"name": "head", "lmo": lmos.get("head", embed_lmo), "params": head},
        {"name": "vector", "lmo": lmos.get("vector", "adamw"), "params": vector},
    ]
    for g in groups:
        g.update(overrides.get(g["name"], {}))
    groups = [g for g in groups if g["params"]]
    check_coverage(model, groups)
    return groups


def check_coverage(model: nn.Module, param_groups: Iterable[dict[str, Any]] | Any) -> None:
    """Raise ``ValueError`` unless every trainable parameter of ``model`` is in exactly one group
    (``param_groups`` may also be an optimizer) and every grouped parameter belongs to the model."""
    groups = getattr(param_groups, "param_groups", param_groups)
    names = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), name)
    count: dict[int, int] = {}
    for g in groups:
        for p in g["params"]:
            count[id(p)] = count.get(id(p), 0) + 1
    missing = sorted(
        {n for pid, n in names.items() if count.get(pid, 0) == 0 and _param(model, n).requires_grad}
    )
    twice = sorted(names.get(pid, "<unknown>") for pid, c in count.items() if c > 1)
    foreign = sum(1 for pid in count if pid not in names)
    if missing or twice or foreign:
        raise ValueError(
            "Invalid params: every trainable parameter must be covered exactly once; "
            f"missing: {missing or 'none'}; more than once: {twice or 'none'}; "
            f"not in the model: {foreign}"
        )


def _param(model: nn.Module, name: str) -> Tensor:
    return model.get_parameter(name)
