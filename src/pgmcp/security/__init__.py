"""The query policy: parse with PostgreSQL's own grammar, classify, decide. No I/O.

See :mod:`pgmcp.security.policy`.
"""

from __future__ import annotations

from pgmcp.security.policy import Decision, Policy, Risk, Rule

__all__ = ["Decision", "Policy", "Risk", "Rule"]
