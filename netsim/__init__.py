"""netsim: the shipped chorusdht node core, thousands of nodes at a time, in virtual time.

`run_scenario` is the entry point; `Simulator` and `Workload` are the pieces it
assembles. See `netsim.engine` for why this is a plain heapq loop and not trio.
"""

from __future__ import annotations

from .engine import SimNode, Simulator, derive_seed
from .network import DEFAULT_CLASSES, LinkModel, NodeClass
from .runner import metrics_json, run_scenario, simulate
from .scenario import Scenario, ScenarioError, find_scenario, list_scenarios, load_scenario
from .simcrypto import SIM_CRYPTO, SimCrypto, SimIdentity

__all__ = [
    "DEFAULT_CLASSES",
    "SIM_CRYPTO",
    "LinkModel",
    "NodeClass",
    "Scenario",
    "ScenarioError",
    "SimCrypto",
    "SimIdentity",
    "SimNode",
    "Simulator",
    "derive_seed",
    "find_scenario",
    "list_scenarios",
    "load_scenario",
    "metrics_json",
    "run_scenario",
    "simulate",
]
