"""BLOCKED_KEYWORDS, second half: the keyword tokens of PostgreSQL's scanner.

A listed word blocks a statement when it is one of the statement's kinds (see
:mod:`pgmcp.security.tree`) or a *keyword token* of the scanner, never when it
sits in a string literal, a quoted identifier or a comment. :func:`keyword_tokens_of`
runs the scanner; :func:`could_be_keyword` is a byte search that only lets the
policy skip the scanner when no listed word can be a token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pglast import parser as _pg


def keyword_tokens_of(query: str) -> list[str]:
    """The keyword tokens of the query, in order, as PostgreSQL's scanner sees them."""
    words: list[str] = []
    for token in _pg.scan(query):
        if token.kind != "NO_KEYWORD":
            # The grammar's token names: DELETE_P is DELETE, NULLS_LA is NULLS.
            name: str = token.name
            if name.endswith("_P"):
                name = name[:-2]
            elif name.endswith("_LA"):
                name = name[:-3]
            words.append(name)
    return words


# Bytes that continue an identifier in PostgreSQL's scanner (ident_cont): a keyword
# token is never directly followed by one, since the scanner takes the longest match.
_IDENT_CONT: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$"
) | frozenset(range(0x80, 0x100))


def could_be_keyword(upper_utf8: bytes, words: Iterable[str]) -> bool:
    """Whether running the scanner can find one of ``words`` as a keyword token.

    Only a shortcut to skip the scanner (the costly part of a cold check) when
    it cannot find anything: it never decides that a word *is* a keyword. A
    keyword token is the word's letters in any ASCII case (the scanner folds
    ASCII only, like ``bytes.upper``), not followed by an identifier byte. So
    ``created_at`` does not make the scanner run for CREATE, ``'CREATE'`` does.
    """
    for word in words:
        needle = word.encode("ascii", "replace")
        start = upper_utf8.find(needle)
        while start >= 0:
            end = start + len(needle)
            if end >= len(upper_utf8) or upper_utf8[end] not in _IDENT_CONT:
                return True
            start = upper_utf8.find(needle, start + 1)
    return False
