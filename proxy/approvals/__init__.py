"""Human approvals: hold risky tool calls until people decide (see "Human approvals" in README.md)."""
from .model import (APPROVED, CANCELLED, DENIED, EXPIRED, FINAL, PENDING, STATES, ApprovalRequest, Vote)
from .service import ApprovalError, ApprovalService, StoreUnavailable, VoteResult
from .settings import Settings

__all__ = ["APPROVED", "CANCELLED", "DENIED", "EXPIRED", "FINAL", "PENDING", "STATES", "ApprovalError",
           "ApprovalRequest", "ApprovalService", "Settings", "StoreUnavailable", "Vote", "VoteResult"]
