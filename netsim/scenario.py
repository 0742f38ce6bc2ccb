"""Scenario files: TOML in `netsim/scenarios/`, parsed into frozen values.

A scenario file looks like this (every key but `duration` has a default):

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

Event fields are documented in `netsim.workload`; `EVENT_FIELDS` below says what each
accepts. A file is checked whole before anything runs: an unknown key or field (a
typo would otherwise silently take the default) or a bad value is a ScenarioError
that names it. Scaled fields (join `count`, puts `count` and `writers`) are multiplied
by nodes/base-nodes when `--nodes` changes the population, so a scenario keeps its
shape at any size.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from chorusdht import ConfigError, NodeConfig
from chorusdht.records import DEFAULT_MAX_RECORD

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
CHUNK_ENVELOPE = 512  # bytes a chunk adds around its payload (ids, seq, signature), rounded up


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
        if candidate.is_dir():
            raise ScenarioError(f"{name_or_path} is a directory, not a scenario file")
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


# ---- field checks: each returns what is wrong with a value, or None ----------------

Rule = Callable[[Any], "str | None"]


def number_rule(
    low: float,
    high: float = math.inf,
    *,
    whole: bool = False,
    above: bool = False,
    below: bool = False,
) -> Rule:
    """A number in [low, high]; `above`/`below` leave out `low`/`high`; `whole`: an integer."""

    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return "must be a number"
        if whole and not isinstance(v, int):
            return "must be a whole number"
        if v < low or (above and v == low) or v > high or (below and v == high):
            lo = f"> {_num(low)}" if above else f">= {_num(low)}"
            hi = f" and < {_num(high)}" if below else f" and <= {_num(high)}"
            return f"must be {lo}" + (hi if high != math.inf else "")
        return None

    return check


def _num(x: float) -> str:
    """A bound as people write it: 31,622,400 rather than 3.16224e+07, 0.5 as 0.5."""
    return f"{int(x):,}" if math.isfinite(x) and x == int(x) else f"{x:g}"


def flag_rule(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def text_rule(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _sizes(v: Any) -> str | None:
    if not isinstance(v, list) or len(v) < 2:
        return "must be a list of at least two fractions, e.g. [0.5, 0.5]"
    if any(_SHARE(x) is not None for x in v):
        return "must hold fractions in (0, 1]"
    return "must add up to at most 1" if sum(v) > 1.0 + 1e-9 else None


_SHARE = number_rule(0.0, 1.0, above=True)  # one group of a partition
_FRACTION = number_rule(0.0, 1.0)
_COUNT = number_rule(0, whole=True)
_SECONDS = number_rule(0.0)
_CLASS = "class"  # checked against the scenario's classes
# Every field an event reads (netsim.workload.Workload), and what it accepts.
EVENT_FIELDS: dict[str, dict[str, Rule | str]] = {
    "join": {"count": _COUNT, "over": _SECONDS},
    "lookups": {"count": _COUNT, "over": _SECONDS, "tag": text_rule},
    "puts": {
        "count": _COUNT,
        "writers": number_rule(1, whole=True),
        "payload": number_rule(0, whole=True),  # and small enough for a record (_parse)
        "class": _CLASS,
    },
    "gets": {"over": _SECONDS, "tag": text_rule},
    "partition": {"sizes": _sizes, "by": lambda v: None if v == "class" else "must be 'class'"},
    "heal": {},
    "crash": {"fraction": _FRACTION, "keep_disk": flag_rule, "restart_after": _SECONDS},
    "churn": {
        "until": _SECONDS,
        "mean_lifetime": number_rule(0.0, above=True),
        "shape": number_rule(0.0, above=True),
        "downtime": number_rule(0.0, above=True),  # the mean of an exponential
        "keep_disk": _FRACTION,
    },
    "nuke": {"fraction": _FRACTION, "class": _CLASS},
    "waves": {"every": number_rule(0.0, above=True), "fraction": _FRACTION, "until": _FRACTION},
}
LINK_FIELDS = ("loss", "duplicate", "reorder")  # netsim.network.LinkModel
CLASS_FIELDS = ("rtt_min", "rtt_max", "loss", "think")  # netsim.network.NodeClass
TOP_LEVEL = frozenset(
    {
        "nodes",
        "duration",
        "fast_crypto",
        "delivery",
        "count_bytes",
        "sample_every",
        "classes",
        "network",
        "config",
        "classdef",
        "sweep",
        "events",
    }
)


def check_field(
    where: str, name: str, value: Any, check: Rule | str, classes: dict[str, NodeClass]
) -> None:
    if check == _CLASS:
        if value not in classes:
            raise ValueError(
                f"{where}: {name} {value!r} is not a node class ({', '.join(classes)})"
            )
        return
    assert not isinstance(check, str)
    problem = check(value)
    if problem is not None:
        raise ValueError(f"{where}: {name} {problem}, got {value!r}".removeprefix(": "))


def load_scenario(path: Path | str) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario {path} is not a text file (TOML is UTF-8)") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"scenario {path} is not valid TOML: {e}") from None
    try:
        return _parse(path.stem, _question(text), data)
    except KeyError as e:
        raise ScenarioError(f"scenario {path}: missing {e.args[0]!r}") from None
    except (TypeError, ValueError, ConfigError) as e:  # ConfigError: NodeConfig's own checks
        raise ScenarioError(f"scenario {path}: {e}") from None


MAX_DURATION = 366 * 86400.0  # a year of virtual time; beyond it a run would not end

# The top-level keys that hold tables rather than values, and how to write them.
_TABLES = {
    "network": "[network] table",
    "config": "[config] table",
    "classes": "[classes] table",
    "sweep": "[sweep] table",
    "classdef": "[classdef.NAME] table",
}


def _check_shapes(data: dict[str, Any]) -> None:
    """Tables where tables belong (`events = 5` is not a list of events)."""
    for key, form in _TABLES.items():
        if key in data and not isinstance(data[key], dict):
            raise ValueError(f"{key} must be a {form}")
    for cname, spec in data.get("classdef", {}).items():
        if not isinstance(spec, dict):
            raise ValueError(f"classdef.{cname} must be a [classdef.{cname}] table")
    events = data.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("events must be [[events]] tables, one per event")


def _parse(name: str, question: str, data: dict[str, Any]) -> Scenario:
    if "engine" in data:  # netsim.recoversim's files: real trio nodes, not this engine
        raise ValueError(
            f"engine = {data['engine']!r} is a survivor-recovery scenario: run it with "
            "`chorusdht sim` or netsim.recoversim.run_file"
        )
    for key in data:
        if key not in TOP_LEVEL:
            raise ValueError(f"unknown key {key!r} (known: {', '.join(sorted(TOP_LEVEL))})")
    if "duration" not in data:
        raise ValueError("missing 'duration' (virtual seconds)")
    _check_shapes(data)
    for key, check in (
        ("nodes", number_rule(1, whole=True)),
        ("duration", number_rule(0.0, MAX_DURATION, above=True)),
        ("sample_every", number_rule(0.0, above=True)),
        ("fast_crypto", flag_rule),
        ("count_bytes", flag_rule),
    ):
        if key in data:
            check_field("", key, data[key], check, {})
    duration = float(data["duration"])
    network = data.get("network", {})
    for key, value in network.items():
        if key not in LINK_FIELDS:
            raise ValueError(f"network: unknown field {key!r} (known: {', '.join(LINK_FIELDS)})")
        check_field("network", key, value, number_rule(0.0, 1.0, below=True), {})
    classes = dict(DEFAULT_CLASSES)
    for cname, spec in data.get("classdef", {}).items():
        for key, value in spec.items():
            if key not in CLASS_FIELDS:
                names = ", ".join(CLASS_FIELDS)
                raise ValueError(f"classdef.{cname}: unknown field {key!r} (known: {names})")
            check_field(f"classdef.{cname}", key, value, number_rule(0.0), {})
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
        check_field("classes", cname, mix_raw[cname], number_rule(0.0), classes)
    if not mix_raw or sum(mix_raw.values()) <= 0:
        raise ValueError("classes: at least one class needs a weight above 0")
    mix = tuple(sorted((str(k), float(v)) for k, v in mix_raw.items()))
    known = {f.name for f in fields(NodeConfig)}
    overrides = data.get("config", {})
    hints = get_type_hints(NodeConfig)
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown config field {key!r}")
        hint = hints[key]
        if hint is bool:
            check = flag_rule
        elif hint in (int, int | None):
            check = number_rule(-math.inf, whole=True)
        elif hint in (float, float | None):
            check = number_rule(-math.inf)
        else:
            raise ValueError(f"config: {key} cannot be set from a scenario")
        check_field("config", key, value, check, classes)
    events = []
    for i, raw in enumerate(data.get("events", []), 1):
        raw = dict(raw)
        kind = raw.pop("kind", None)
        if kind is None:
            raise ValueError(f"event {i}: needs a kind ({', '.join(sorted(EVENT_KINDS))})")
        if kind not in EVENT_KINDS:
            kinds = ", ".join(sorted(EVENT_KINDS))
            raise ValueError(f"event {i}: unknown kind {kind!r} (known: {kinds})")
        where = f"event {i} ({kind})"
        at = raw.pop("at", 0.0)
        check_field(where, "at", at, number_rule(0.0, duration), classes)
        allowed = EVENT_FIELDS[kind]
        for key, value in raw.items():
            if key not in allowed:
                names = ", ".join(["at", *allowed])
                raise ValueError(f"{where}: unknown field {key!r} (known: {names})")
            check_field(where, key, value, allowed[key], classes)
        events.append(Event(kind, float(at), raw))
    events.sort(key=lambda e: e.at)  # stable: equal times keep file order
    sweep = None
    if "sweep" in data:
        s = data["sweep"]
        for key in s:
            if key not in ("event", "field", "values"):
                raise ValueError(f"sweep: unknown field {key!r} (known: event, field, values)")
        if not isinstance(s.get("values", []), list):
            raise ValueError("sweep: values must be a list, e.g. [0.5, 0.9]")
        sweep = (str(s["event"]), str(s["field"]), tuple(s["values"]))
        kind, key, values = sweep
        if not any(e.kind == kind for e in events):
            raise ValueError(f"sweep: the scenario has no {kind!r} event")
        if key not in EVENT_FIELDS[kind]:
            raise ValueError(f"sweep: {kind} events have no field {key!r}")
        if not values:
            raise ValueError("sweep: values must not be empty")
        for value in values:
            check_field(
                f"sweep over {kind}.{key}", "a value", value, EVENT_FIELDS[kind][key], classes
            )
    delivery = data.get("delivery", "messages")
    if delivery not in ("messages", "bytes"):
        raise ValueError("delivery must be 'messages' or 'bytes'")
    config = NodeConfig(**overrides)
    limit = min(config.max_record, DEFAULT_MAX_RECORD) - CHUNK_ENVELOPE
    for ev in events:
        if ev.kind == "puts" and ev.get("payload", 0) > limit:
            raise ValueError(f"puts event: payload must be <= {limit} bytes to fit in a record")
    return Scenario(
        name=name,
        question=question,
        nodes=int(data.get("nodes", 100)),
        duration=duration,
        events=tuple(events),
        classes=classes,
        mix=mix,
        link=LinkModel(**network),
        config=config,
        fast_crypto=bool(data.get("fast_crypto", False)),
        wire=delivery == "bytes",
        count_bytes=bool(data.get("count_bytes", True)),
        sample_every=float(data.get("sample_every", 300.0)),
        sweep=sweep,
    )
