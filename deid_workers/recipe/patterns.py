"""Regular expressions from recipes and headers, matched so that none can hang a worker.

deid reads %filter terms, selector expanders (``contains:``, ``startswith:`` ...) and %values
lists as Python regular expressions, and Python's engine backtracks: ``(a+)+$`` against a
header value of 30 ``a`` and a ``!`` runs for minutes, in every worker, on every such file. A
%values list is worse: its pattern is built from header values, so a file chooses it.

:func:`compile_pattern` keeps Python's meaning (the pattern is compiled by ``re`` first, so
what ``re`` refuses is refused as before) and picks, once, how to run it:

- ``re`` itself when the pattern has no unbounded repetition and few ways through it (a plain
  word, a short alternation, ``[0-9a-f]{6}``: most recipe terms), its work bounded by text x
  pattern length; and for a text up to :data:`SHORT_TEXT` characters when it has one unbounded
  repetition of single characters (``^1\\.2.*``), at worst quadratic: ``re`` answers these in a
  fraction of RE2's cost of a call;
- RE2 (google-re2), linear in the text whatever the pattern, for what it can express with the
  same meaning: the pattern is rebuilt from Python's own parse of it (``re._parser``, an
  internal module: where it fails or changes, the next way is taken). Case-insensitive
  patterns and ``\\d \\w \\s`` differ between the engines outside ASCII (Python folds ``ı`` to
  ``i``, RE2 does not), so such a pattern runs on RE2 for ASCII text only;
- ``re`` with a time limit per match (:data:`MATCH_SECONDS`, a ``SIGALRM`` timer: the ``re``
  engine stops for signals) for the rest (backreferences, lookaround, atomic groups) and for
  non-ASCII text in the case above. The limit needs the main thread, where Celery's prefork
  workers run tasks; elsewhere only the batch's time limit bounds it. A pattern of that kind
  whose unbounded repetition holds more than single characters (``(x+)+``, ``(a|ab)+``) may
  backtrack exponentially, so it is refused when compiled (a recipe: at load, with its line).

A match past the time limit raises :class:`PatternTimeout`, which names the recipe line (or
the %values list) and never the text, so the file fails with that reason and the worker goes on.
"""

from __future__ import annotations

import importlib
import re
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import RecipeError

__all__ = ["MATCH_SECONDS", "Pattern", "PatternError", "PatternTimeout", "compile_pattern"]

MATCH_SECONDS = 1.0
"""Longest one match may run on the backtracking fallback. A header value's match takes
microseconds; a second is a thousand times any we measured, and one hostile file then costs a
worker a second, not the batch's time limit."""

PATHS_MAX = 64
"""Most ways through a pattern, its one unbounded repetition aside, that ``re`` runs as it is:
each start position then costs at most this many tries of the pattern's length."""

SHORT_TEXT = 1024
"""Longest text ``re`` runs a pattern with one unbounded repetition of single characters on
(``\\d+x``: at worst quadratic in the text, a millisecond at this length); longer texts go to
RE2. Recipe selectors search tag names and keywords, and most header values are shorter."""

_REPEAT_MAX = 1000
"""RE2 refuses a counted repetition above this (``x{1001}``)."""


def _internal(name: str, before_311: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - Python 3.10 names them sre_*
        return importlib.import_module(before_311)


# Python's own parse of a pattern: internal modules of ``re`` (sre_parse and sre_constants
# before 3.11); where they fail, compile_pattern takes the fallback.
_parser = _internal("re._parser", "sre_parse")
_C = _internal("re._constants", "sre_constants")


class PatternError(ValueError):
    """A pattern that cannot run in bounded time (message names why, never a value)."""


class PatternTimeout(RecipeError):
    """A match ran past :data:`MATCH_SECONDS` on the backtracking fallback."""


class _Unsupported(Exception):
    """RE2 cannot run this pattern with Python's meaning."""


@dataclass(eq=False)
class Pattern:
    """A compiled pattern; :meth:`search` says whether it matches anywhere in a text."""

    text: str
    flags: int
    where: tuple[str | None, int | None]
    engine: str  # "re", "re2" or "timed" (re under a timer)
    compiled: re.Pattern[str] = field(repr=False)
    ascii_only: bool = False  # RE2 only when the text is ASCII (else the fallback)
    short: int = -1  # texts up to this length go to re (see SHORT_TEXT)
    _re2: Any = field(default=None, repr=False)

    def search(self, text: str) -> bool:
        if self.engine == "re" or len(text) <= self.short:
            return self.compiled.search(text) is not None
        if self._re2 is not None and (not self.ascii_only or text.isascii()):
            try:
                return bool(self._re2(text))
            except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for RE2
                pass
        return self._slow(text)

    def _slow(self, text: str) -> bool:
        """``re`` under a timer of :data:`MATCH_SECONDS`: PatternTimeout when it rings. A
        timer already running (a caller's) is put back afterwards, less the time spent; one
        due sooner than ours is left to ring by itself."""
        if threading.current_thread() is not threading.main_thread():
            return self.compiled.search(text) is not None  # see the module's docstring
        outer, interval = signal.getitimer(signal.ITIMER_REAL)
        if 0 < outer <= MATCH_SECONDS:
            return self.compiled.search(text) is not None
        previous = signal.signal(signal.SIGALRM, _ring)
        started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, MATCH_SECONDS)
        try:
            return self.compiled.search(text) is not None
        except _Rang:
            path, line = self.where
            raise PatternTimeout(
                f"pattern {self.text[:60]!r} ran past its {MATCH_SECONDS:g} s limit on a value "
                "of this file", path, line) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer:
                spent = time.monotonic() - started
                signal.setitimer(signal.ITIMER_REAL, max(outer - spent, 1e-3), interval)


class _Rang(Exception):
    """Raised by the SIGALRM handler inside a match."""


def _ring(signum: int, frame: object) -> None:
    raise _Rang


def compile_pattern(text: str, flags: int = 0, *,
                    where: tuple[str | None, int | None] = (None, None)) -> Pattern:
    """Compile ``text`` with Python's meaning (``flags``: ``re`` flags), to run in bounded time.

    Raises ``re.error`` where ``re.compile`` would, and :class:`PatternError` for a pattern
    only the backtracking fallback can run that nests unbounded repetition. ``where`` (recipe
    path, line) goes into the :class:`PatternTimeout` a match may raise.
    """
    compiled = re.compile(text, flags)
    try:
        tree = _parser.parse(text, flags)
    except Exception:  # noqa: BLE001 - the internal parser disagrees: take the safe way
        tree = None
    paths, stars = _paths(list(tree)) if tree is not None else (_INFINITE, 0)
    if paths <= PATHS_MAX and stars == 0:
        return Pattern(text, flags, where, "re", compiled)
    short = SHORT_TEXT if paths <= PATHS_MAX and stars == 1 else -1
    if tree is not None:
        try:
            translated, ascii_only = _Translator(tree.state.flags).pattern(list(tree))
            matcher = _re2_matcher(translated)
        except _Unsupported:
            pass
        else:
            return Pattern(text, flags, where, "re2", compiled, ascii_only, short, matcher)
        if _backtracks_badly(list(tree)):
            raise PatternError("a repeated group that can match in several ways (such as "
                               "(x+)+ or (a|ab)+) can take exponential time on the engine this "
                               "pattern needs (it uses a backreference or lookaround); "
                               "rewrite it")
    return Pattern(text, flags, where, "timed", compiled)


# --- re: how many ways through a pattern without repetition ----------------------------------

_INFINITE = 1 << 62


def _paths(nodes: Sequence[tuple[Any, Any]]) -> tuple[int, int]:
    """(ways a backtracking engine may try through ``nodes`` from one position, unbounded
    repetitions of single characters left out; how many of those there are). Anything else
    (a repeated group that matches in several ways, references, lookaround) is _INFINITE."""
    total, stars = 1, 0
    for op, av in nodes:
        if op is _C.BRANCH:
            counted = [_paths(list(alt)) for alt in av[1]]
            count = sum(c for c, _ in counted)
            stars += sum(s for _, s in counted)
        elif op is _C.SUBPATTERN:
            count, inner = _paths(list(av[3]))
            stars += inner
        elif op in (_C.LITERAL, _C.NOT_LITERAL, _C.ANY, _C.IN, _C.AT):
            count = 1
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT) and _single_way(list(av[2])):
            if av[1] is _C.MAXREPEAT:
                count, stars = 1, stars + 1
            else:
                count = av[1] - av[0] + 1
        else:
            return _INFINITE, 0
        total = min(total * count, _INFINITE)
    return total, stars


def _backtracks_badly(nodes: Sequence[tuple[Any, Any]]) -> bool:
    """Whether an unbounded repetition holds anything but single characters and anchors.

    Judged on Python's parse, conservatively (a pattern of this kind runs with a time limit
    anyway): ``(x+)+``, ``(a|ab)+`` or ``(a?b?)*`` let a backtracking engine split one text in
    exponentially many ways; ``[a-z]+`` or ``(ab)+`` do not.
    """
    for op, av in nodes:
        if op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT):
            if av[1] is _C.MAXREPEAT and not _single_way(list(av[2])):
                return True
            subs = [av[2]]
        elif op is _C.BRANCH:
            subs = list(av[1])
        elif op is _C.SUBPATTERN:
            subs = [av[3]]
        elif op in (_C.ASSERT, _C.ASSERT_NOT):
            subs = [av[1]]
        elif op is _C.ATOMIC_GROUP:
            subs = [av]
        elif op is _C.GROUPREF_EXISTS:
            subs = [sub for sub in av[1:] if sub is not None]
        else:
            continue
        if any(_backtracks_badly(list(sub)) for sub in subs):
            return True
    return False


def _single_way(nodes: Sequence[tuple[Any, Any]]) -> bool:
    """A body that matches a given text in one way only: characters, sets and anchors."""
    for op, av in nodes:
        if op is _C.SUBPATTERN:
            if not _single_way(list(av[3])):
                return False
        elif op not in (_C.LITERAL, _C.NOT_LITERAL, _C.ANY, _C.IN, _C.AT, _C.GROUPREF):
            return False
    return True


# --- RE2: the same pattern rebuilt in its syntax ------------------------------------------------

_ASCII_MAX = 0x7F
_ASCII_CLASSES = {  # what \d \w \s match in ASCII text (Python's str.isspace: \x1c-\x1f too)
    _C.CATEGORY_DIGIT: ((0x30, 0x39),),
    _C.CATEGORY_WORD: ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    _C.CATEGORY_SPACE: ((0x09, 0x0D), (0x1C, 0x20)),
}
_ASCII_FLAG_SPACE = ((0x09, 0x0D), (0x20, 0x20))
"""What ``\\s`` matches under re.ASCII: space, tab, newline, return, form feed, vertical tab."""
_NEGATED = {_C.CATEGORY_NOT_DIGIT: _C.CATEGORY_DIGIT, _C.CATEGORY_NOT_WORD: _C.CATEGORY_WORD,
            _C.CATEGORY_NOT_SPACE: _C.CATEGORY_SPACE}


def _complement(ranges: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """The ASCII characters outside ``ranges``: such a class only ever meets ASCII text (and
    a wider one would gain letters under RE2's case folding: U+212A folds to k)."""
    out, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _ASCII_MAX:
        out.append((start, _ASCII_MAX))
    return tuple(out)


def _char(code: int) -> str:
    return "\\x{%x}" % code


class _Translator:
    """Python's parse of a pattern -> an RE2 pattern of the same meaning, or _Unsupported."""

    def __init__(self, flags: int) -> None:
        if flags & (re.MULTILINE | re.LOCALE):
            raise _Unsupported
        self.ignorecase = bool(flags & re.IGNORECASE)
        self.dotall = bool(flags & re.DOTALL)
        self.classes = dict(_ASCII_CLASSES)
        if flags & re.ASCII:
            self.classes[_C.CATEGORY_SPACE] = _ASCII_FLAG_SPACE
        self.ascii_only = self.ignorecase  # case folding outside ASCII differs

    def pattern(self, nodes: Sequence[tuple[Any, Any]]) -> tuple[str, bool]:
        body = self._seq(nodes, tail=True)
        return ("(?i)" if self.ignorecase else "") + body, self.ascii_only

    def _seq(self, nodes: Sequence[tuple[Any, Any]], tail: bool) -> str:
        last = len(nodes) - 1
        return "".join(self._node(op, av, tail and i == last) for i, (op, av) in enumerate(nodes))

    def _literal(self, code: int) -> str:
        if self.ignorecase and code > 0x7F:
            raise _Unsupported
        return _char(code)

    def _node(self, op: Any, av: Any, tail: bool) -> str:
        if op is _C.LITERAL:
            return self._literal(av)
        if op is _C.NOT_LITERAL:
            return "[^" + self._literal(av) + "]"
        if op is _C.ANY:
            return "(?s:.)" if self.dotall else "."  # both: anything but \n
        if op is _C.IN:
            return self._class(av)
        if op is _C.BRANCH:
            return "(?:" + "|".join(self._seq(list(alt), tail) for alt in av[1]) + ")"
        if op is _C.SUBPATTERN:
            _, add, remove, sub = av
            if add or remove:
                raise _Unsupported
            return "(?:" + self._seq(list(sub), tail) + ")"
        if op in (_C.MAX_REPEAT, _C.MIN_REPEAT):  # a lazy one matches where a greedy one does
            lo, hi, sub = av
            if lo > _REPEAT_MAX or (hi is not _C.MAXREPEAT and hi > _REPEAT_MAX):
                raise _Unsupported
            body = "(?:" + self._seq(list(sub), False) + ")"
            if hi is _C.MAXREPEAT:
                return body + ("*" if lo == 0 else "+" if lo == 1 else "{%d,}" % lo)
            return body + ("{%d}" % lo if lo == hi else "{%d,%d}" % (lo, hi))
        if op is _C.AT:
            if av in (_C.AT_BEGINNING, _C.AT_BEGINNING_STRING):
                return "\\A"
            if av is _C.AT_END_STRING:
                return "\\z"
            if av is _C.AT_END and tail:
                # Python's $ also matches before a newline that ends the text; with nothing
                # after it in the pattern, that is "an optional newline, then the end".
                return "\\n?\\z"
        raise _Unsupported  # \b, $ before more pattern, references, lookaround, atomic...

    def _class(self, items: Sequence[tuple[Any, Any]]) -> str:
        negate = False
        parts: list[str] = []
        for op, av in items:
            if op is _C.NEGATE:
                negate = True
            elif op is _C.LITERAL:
                parts.append(self._literal(av))
            elif op is _C.RANGE:
                lo, hi = av
                if self.ignorecase and hi > 0x7F:
                    raise _Unsupported
                parts.append(_char(lo) + "-" + _char(hi))
            elif op is _C.CATEGORY:
                self.ascii_only = True  # Python's \d \w \s are Unicode-wide; RE2's ASCII
                ranges = self.classes.get(av)
                if ranges is None:
                    if av not in _NEGATED:
                        raise _Unsupported
                    ranges = _complement(self.classes[_NEGATED[av]])
                parts.extend(_char(lo) + "-" + _char(hi) for lo, hi in ranges)
            else:
                raise _Unsupported
        if not parts:
            raise _Unsupported
        return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _re2_matcher(translated: str) -> Any:
    """A callable text -> truthy when ``translated`` matches somewhere (RE2, unanchored)."""
    try:
        import re2
    except ImportError:  # pragma: no cover - a dependency; without it the fallback runs
        raise _Unsupported from None
    options = re2.Options()
    options.never_capture = True  # a yes/no answer: no group is ever read
    try:
        compiled = re2.compile(translated, options)
    except re2.error:
        raise _Unsupported from None
    # google-re2's search() builds a match object (2.8 us a call); its underlying RE2 object
    # answers the same question in 0.6 us (measured). That object is the package's internal
    # binding: where it is missing, search() is the plain path.
    raw = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(getattr(re2, "_re2", None), "RE2", None), "Anchor", None)
    if raw is None or anchor is None or not hasattr(raw, "Match"):
        return lambda text: compiled.search(text) is not None
    unanchored = anchor.UNANCHORED
    no_match = (-1, -1)

    def matches(text: str) -> bool:
        data = text.encode("utf-8")
        return bool(raw.Match(unanchored, data, 0, len(data))[0] != no_match)

    return matches
