"""Scenario files: TOML in `netsim/scenarios/`, parsed into frozen values.

A scenario file looks like this (every key but `events` has a default):

    # What question does this scenario answer? (first comment lines: shown by the CLI)
    nodes = 1000                # population; `--nodes` scales it (event counts scale too)
    duration = 7200             # virtual seconds
    fast_crypto = false         # true: netsim.simcrypto instead of Ed25519 (large runs)
    delivery = "messages"       # or "bytes": full CBOR encode/decode per datagram
    count_bytes = true          # in "messages" mode, encode once per datagram to count bytes
    sample_every = 300          # virtual seconds between replica censuses
    classes = { datacenter = 1.0 }       # class mix (weights)
    [network]                   # loss, duplicate, reorder (on top of each class's loss)
    [config]                    # NodeConfig overrides, e.g. k = 20, republish_interval = 3600
    [classdef.pizero]           # override or add a class: rtt_min, rtt_max, loss, think
    [sweep]                     # optional: event = "nuke", field = "fraction", values = [...]
    [[events]]                  # kind = join | lookups | puts | gets | partition | heal |
                                #        crash | churn | nuke | waves

Event fields are documented on `netsim.workload.Workload`. Scaled fields
(join `count`, puts `count` and `writers`) are multiplied by nodes/base-nodes when `--nodes` changes
the population, so a scenario keeps its shape at any size.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from chorusdht import NodeConfig

from .network import DEFAULT_CLASSES, LinkModel, NodeClass

__all__ = [
    "EVENT_KINDS",
    "SCENARIO_DIR",
    "Event",
    "Scenario",
    "ScenarioError",
    "find_scenario",
    "list_scenarios",
    "load_scenario",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
EVENT_KINDS = frozenset(
    {"join", "lookups", "puts", "gets", "partition", "heal", "crash", "churn", "nuke", "waves"}
)
# Event fields that grow with the population; lookup counts stay (they are samples).
SCALED_FIELDS = {"join": ("count",), "puts": ("count", "writers")}


class ScenarioError(Exception):
    """A scenario name, path or file is wrong; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    at: float
    params: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    question: str
    nodes: int
    duration: float
    events: tuple[Event, ...]
    classes: dict[str, NodeClass]
    mix: tuple[tuple[str, float], ...]
    link: LinkModel
    config: NodeConfig
    fast_crypto: bool = False
    wire: bool = False
    count_bytes: bool = True
    sample_every: float = 300.0
    sweep: tuple[str, str, tuple[Any, ...]] | None = None

    def scaled(self, nodes: int) -> Scenario:
        """The same scenario with `nodes` nodes; counts scale in proportion (at least 1)."""
        if nodes == self.nodes:
            return self
        factor = nodes / self.nodes
        events = []
        for ev in self.events:
            params = dict(ev.params)
            for name in SCALED_FIELDS.get(ev.kind, ()):
                if name in params:
                    params[name] = max(1, round(params[name] * factor))
            events.append(replace(ev, params=params))
        return replace(self, nodes=nodes, events=tuple(events))

    def variant(self, value: Any) -> Scenario:
        """The scenario with the swept event field set to `value`."""
        assert self.sweep is not None
        kind, name, _ = self.sweep
        events = tuple(
            replace(ev, params={**ev.params, name: value}) if ev.kind == kind else ev
            for ev in self.events
        )
        return replace(self, events=events, sweep=None)


def list_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def find_scenario(name_or_path: str) -> Path:
    """A shipped scenario's name ("lookup-10k") or a path to a .toml file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.is_file():
            raise ScenarioError(f"no scenario file at {name_or_path}")
        return candidate
    shipped = SCENARIO_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        known = ", ".join(list_scenarios())
        raise ScenarioError(f"unknown scenario {name_or_path!r} (known: {known})")
    return shipped


def _question(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(x for x in lines if x)


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"scenario {path} is not valid TOML: {e}") from None
    try:
        return _parse(path.stem, _question(text), data)
    except (KeyError, TypeError, ValueError) as e:
        raise ScenarioError(f"scenario {path}: {e}") from None


def _parse(name: str, question: str, data: dict[str, Any]) -> Scenario:
    classes = dict(DEFAULT_CLASSES)
    for cname, spec in data.get("classdef", {}).items():
        base = classes.get(cname)
        merged = {
            "rtt_min": spec.get("rtt_min", base.rtt_min if base else None),
            "rtt_max": spec.get("rtt_max", base.rtt_max if base else None),
            "loss": spec.get("loss", base.loss if base else 0.0),
            "think": spec.get("think", base.think if base else 10.0),
        }
        if merged["rtt_min"] is None or merged["rtt_max"] is None:
            raise ValueError(f"class {cname} needs rtt_min and rtt_max")
        classes[cname] = NodeClass(cname, **merged)
    mix_raw = data.get("classes", {"datacenter": 1.0})
    for cname in mix_raw:
        if cname not in classes:
            raise ValueError(f"unknown node class {cname!r}")
    mix = tuple(sorted((str(k), float(v)) for k, v in mix_raw.items()))
    known = {f.name for f in fields(NodeConfig)}
    overrides = data.get("config", {})
    for key in overrides:
        if key not in known:
            raise ValueError(f"unknown config field {key!r}")
    events = []
    for raw in data.get("events", []):
        raw = dict(raw)
        kind = raw.pop("kind")
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        events.append(Event(kind, float(raw.pop("at", 0.0)), raw))
    events.sort(key=lambda e: e.at)  # stable: equal times keep file order
    sweep = None
    if "sweep" in data:
        s = data["sweep"]
        sweep = (str(s["event"]), str(s["field"]), tuple(s["values"]))
    delivery = data.get("delivery", "messages")
    if delivery not in ("messages", "bytes"):
        raise ValueError("delivery must be 'messages' or 'bytes'")
    return Scenario(
        name=name,
        question=question,
        nodes=int(data.get("nodes", 100)),
        duration=float(data["duration"]),
        events=tuple(events),
        classes=classes,
        mix=mix,
        link=LinkModel(**data.get("network", {})),
        config=NodeConfig(**overrides),
        fast_crypto=bool(data.get("fast_crypto", False)),
        wire=delivery == "bytes",
        count_bytes=bool(data.get("count_bytes", True)),
        sample_every=float(data.get("sample_every", 300.0)),
        sweep=sweep,
    )
