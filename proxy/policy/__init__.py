"""Airlock policy engine: YAML + CEL policies deciding tool calls.

Public API (other areas code against exactly this)::

    from proxy.policy import CallContext, Decision, Engine, PolicyError, PolicyHolder, load_engine
"""
from .engine import Engine
from .holder import PolicyHolder
from .load import load_engine
from .model import (ACTIONS, JUSTIFICATION_MODES, Budget, CallContext, Decision, ModelRule,
                    PolicyError, RateLimit, Workflow)

__all__ = ["ACTIONS", "JUSTIFICATION_MODES", "Budget", "CallContext", "Decision", "Engine",
           "ModelRule", "PolicyError", "PolicyHolder", "RateLimit", "Workflow", "load_engine"]
