"""Airlock policy engine: YAML + CEL policies deciding tool calls.

Public API (other areas code against exactly this)::

    from proxy.policy import CallContext, Decision, Engine, PolicyError, PolicyHolder, load_engine
    from proxy.policy.secrets import find_secrets, redact
"""
from .engine import Engine, Rule, Condition
from .holder import PolicyHolder
from .load import load_engine, load_engine_text
from .model import (ACTIONS, JUSTIFICATION_MODES, Budget, CallContext, Decision, ModelRule,
                    PolicyError, RateLimit, Workflow)

__all__ = ["ACTIONS", "JUSTIFICATION_MODES", "Budget", "CallContext", "Condition", "Decision",
           "Engine", "ModelRule", "PolicyError", "PolicyHolder", "RateLimit", "Rule", "Workflow",
           "load_engine", "load_engine_text"]
