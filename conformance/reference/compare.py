"""Greedy comparison of a target's answer with the oracle's, position by position, within a Tolerance.

`align` walks both answers' logprobs entries from the first generated token. Equal tokens are
judged and the walk goes on; a different token is excused only where the oracle itself lists the
target's token within the margin tolerance of its chosen one (a near-tie: the target's arithmetic
may tip it), and the walk stops there: nothing after an excused divergence is judged. A different
token anywhere else is a disagreement. A target that gives no logprobs is compared by text up to
the oracle's first near-tie. `chosen_disagreements` and `top_set_disagreements` judge the logprobs
at the positions the walk found equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.reference.answers import END, Alt, Answer, Entry, lossy_match, same_token
from conformance.reference.tolerance import FLOAT_SLACK, Tolerance, chosen_interval, within

# Disagreements about how the logprobs report the tokens, not about the tokens: the walk goes on past them.
REPORTING = ("merged-entries", "missing-entries")


@dataclass(frozen=True)
class Disagreement:
    """One place where the target's answer departs from the oracle's beyond the tolerance."""

    case: str  # the request it comes from, e.g. "greedy/plain"
    kind: str  # token, ended-early, went-on, content, chosen-logprob, top-set, prompt-tokens, ...
    message: str
    position: int | None = None
    reference: Any = None  # the oracle's side, JSON-ready
    target: Any = None  # the target's side, JSON-ready

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record (reports and reference.json)."""
        return {"case": self.case, "kind": self.kind, "position": self.position, "message": self.message,
                "reference": self.reference, "target": self.target}


@dataclass
class Alignment:
    """What one greedy comparison found."""

    case: str
    margin: float  # the tolerance's margin
    judged: int = 0  # leading oracle positions whose text the target reproduced
    complete: bool = False  # every position equal and both ended there: the same generation
    excused_at: int | None = None  # a near-tie where the target went another way (nothing judged after it)
    disagreements: list[Disagreement] = field(default_factory=list)
    pairs: list[tuple[int, Entry, Entry]] = field(default_factory=list)  # (position, oracle, target) found equal
    by_text: bool = False  # the target gave no logprobs: compared by text
    lossy: list[int] = field(default_factory=list)  # positions matched without the bytes to tell (see _finish)

    @property
    def disagreement(self) -> Disagreement | None:
        """The first disagreement, if any."""
        return self.disagreements[0] if self.disagreements else None

    @property
    def stopped(self) -> bool:
        """Judging stopped before the end: a near-tie, or a disagreement other than merged entries."""
        return self.excused_at is not None or any(d.kind not in REPORTING for d in self.disagreements)


def near_tie(entry: Entry, token: Alt | None, tol: Tolerance) -> bool:
    """The oracle lists `token` (None: one it does not list) within the margin tolerance of its choice."""
    best = entry.chosen.logprob
    listed = None if token is None else entry.top_logprob(token)
    if listed is None:  # unlisted: below the last alternative, so a near-tie only if that one is near
        return bool(entry.tops) and entry.tops[-1].logprob >= best - tol.margin - FLOAT_SLACK
    return listed >= best - tol.margin - FLOAT_SLACK


def _context(answer: Answer, position: int) -> str:
    """The last 40 characters generated before a position (evidence)."""
    return answer.text_of(position)[-40:]


def _side(entries: tuple[Entry, ...], i: int, answer: Answer) -> dict[str, Any]:
    return entries[i].show() if i < len(entries) else {"ended": answer.finish_reason}


def _shared(o_entries: tuple[Entry, ...], oi: int, t: Entry) -> tuple[int, bytes]:
    """How many oracle entries from `oi` the bytes of the target's one entry begin with, and the bytes left over.

    llama.cpp reports the tokens of one UTF-8 character as a single entry: the entry then holds the bytes
    of several oracle entries (nothing left over), or of a few and then of a token of its own.
    """
    if t.chosen.raw is None:
        return 0, b""
    rest, count = bytes(t.chosen.raw), 0
    for entry in o_entries[oi:oi + 4]:
        raw = entry.chosen.raw
        if raw is None or not raw or not rest.startswith(bytes(raw)):
            break
        rest, count = rest[len(raw):], count + 1
    return count, rest


def align(case: str, oracle: Answer, target: Answer, tol: Tolerance) -> Alignment:
    """Compare two greedy answers to the same request (the target's entries when it gives them, else its text)."""
    if target.entries is None or oracle.entries is None:
        return _align_text(case, oracle, target, tol)
    out = Alignment(case, tol.margin)
    o_entries, t_entries = oracle.entries, target.entries
    oi = ti = 0
    while oi < len(o_entries):
        o = o_entries[oi]
        if ti >= len(t_entries):
            if _unlisted_tail(oracle, target, oi):
                out.disagreements.append(Disagreement(
                    case, "missing-entries", f"the target lists no entry for the last {len(o_entries) - oi} "
                    f"token(s), which end inside a UTF-8 character, though completion_tokens counts them", oi,
                    {"after": _context(oracle, oi), "entries": [e.show() for e in o_entries[oi:]]},
                    {"completion_tokens": target.completion_tokens, "entries": len(t_entries)}))
                out.judged, out.complete = len(o_entries), True
                return _finish(out, oracle, target)
            if near_tie(o, END, tol):
                out.excused_at = oi  # the end of turn was near-tied with the oracle's token
            else:
                out.disagreements.append(Disagreement(
                    case, "ended-early", f"the target ended after {oi} tokens ({target.finish_reason}); the "
                    f"reference goes on with {o.chosen.token!r} (margin {o.margin:.4g})", oi,
                    {"after": _context(oracle, oi), **o.show()}, {"ended": target.finish_reason}))
            return _finish(out, oracle, target)
        t = t_entries[ti]
        if same_token(o.chosen, t.chosen):
            if lossy_match(o.chosen, t.chosen):
                out.lossy.append(oi)
            out.pairs.append((oi, o, t))
            oi, ti = oi + 1, ti + 1
            out.judged = oi
            continue
        shared, rest = _shared(o_entries, oi, t)
        if shared and (len(t.chosen.raw or ()) > len(o.chosen.raw or ())):
            out.disagreements.append(Disagreement(
                case, "merged-entries", f"token {oi}: the target reports the tokens of one UTF-8 character as one "
                f"logprobs entry {t.chosen.token!r}, with the last one's logprob; the reference lists "
                f"{shared + bool(rest)} entries", oi,
                {"after": _context(oracle, oi), "entries": [e.show() for e in o_entries[oi:oi + shared + 1]]},
                t.show()))
            oi, ti = oi + shared, ti + 1
            out.judged = oi
            if not rest:
                continue
            # The character's last token is the target's own: judged like any other token at that position.
            t = Entry(Alt("", t.chosen.logprob, tuple(rest)), ())
            if oi >= len(o_entries):
                break
            o = o_entries[oi]
        if near_tie(o, t.chosen, tol):
            out.excused_at = oi
        else:
            listed = o.top_logprob(t.chosen)
            where = f"the reference's logprob for it is {listed:.4g}" if listed is not None else \
                "the reference does not list it among its top alternatives"
            kind = "ended-early" if t.chosen.is_end else "token"
            out.disagreements.append(Disagreement(
                case, kind, f"token {oi} differs: reference {o.chosen.token!r} ({o.chosen.logprob:.4g}), target "
                f"{t.chosen.token!r}; {where}, beyond the margin tolerance {tol.margin:g} of its choice", oi,
                {"after": _context(oracle, oi), **o.show()}, t.show()))
        return _finish(out, oracle, target)
    _after_oracle_end(out, oracle, target, ti, tol)
    return _finish(out, oracle, target)


def _unlisted_tail(oracle: Answer, target: Answer, oi: int) -> bool:
    """The oracle's tokens from `oi` only begin a character, and the target counts as many tokens as the oracle."""
    entries = oracle.entries or ()
    return (oi < len(entries) and oracle.text_of(oi) == oracle.text_of(len(entries))
            and target.completion_tokens == oracle.completion_tokens and target.finish_reason == oracle.finish_reason)


def _after_oracle_end(out: Alignment, oracle: Answer, target: Answer, ti: int, tol: Tolerance) -> None:
    """Every oracle token matched: did the target end there too?"""
    n, t_entries = len(oracle.entries or ()), target.entries or ()
    if len(t_entries) == ti or (len(t_entries) == ti + 1 and t_entries[ti].chosen.is_end):
        out.complete = True
        return
    extra = t_entries[ti]
    if oracle.finish_reason != "length":
        # The reference ended its turn here; its end-of-turn token has no entry, so the target's own
        # alternatives tell whether ending was a near-tie for it.
        end = extra.top_logprob(END)
        if end is not None and end >= extra.chosen.logprob - tol.margin - FLOAT_SLACK:
            out.excused_at = n
            return
    why = "cut by max_tokens: the target generated more tokens than max_tokens" if oracle.finish_reason == "length" \
        else oracle.finish_reason
    out.disagreements.append(Disagreement(
        out.case, "went-on", f"the reference ended after {n} tokens ({why}); the target went on with "
        f"{extra.chosen.token!r}", n, {"after": _context(oracle, n), "ended": oracle.finish_reason},
        extra.show()))


def _finish(out: Alignment, oracle: Answer, target: Answer) -> Alignment:
    """The content check: the target's content holds the judged tokens' text (detokenisation)."""
    if out.lossy:  # tokens matched without bytes: the content tells whether they really were the same
        known = oracle.text_of(out.judged)
        if not target.content.startswith(known):
            at = next((k for k, (a, b) in enumerate(zip(known, target.content, strict=False)) if a != b),
                      min(len(known), len(target.content)))
            if _lossy_divergence(out, oracle, target, at):
                return out
    if out.stopped and out.excused_at is None:
        return out
    expected = oracle.content if out.complete else oracle.text_of(out.judged)
    content = target.content
    # A generation cut inside a character may end with the incomplete character dropped or replaced.
    ok = content.rstrip("\ufffd") == expected.rstrip("\ufffd") if out.complete else content.startswith(expected)
    if not ok:
        at = next((k for k, (a, b) in enumerate(zip(expected, content, strict=False)) if a != b),
                  min(len(expected), len(content)))
        if _lossy_divergence(out, oracle, target, at):
            return out
        out.disagreements.append(Disagreement(
            out.case, "content",
            f"the tokens agree for {out.judged} positions but the content differs from their text at "
            f"character {at}", None, {"content": expected, "around": expected[max(0, at - 20):at + 20]},
            {"content": content, "around": content[max(0, at - 20):at + 20]}))
    return out


def _lossy_divergence(out: Alignment, oracle: Answer, target: Answer, at: int) -> bool:
    """The content differs after tokens matched without bytes: the divergence lies among them.

    Judging stops at the first such token: excused when a near-tie lies between it and the character
    where the texts part, a token disagreement otherwise; the positions after it are not judged.
    """
    char_end = next((j for j in range(len(oracle.entries or ())) if len(oracle.text_of(j + 1)) > at), None)
    confirmed = _confirmed(oracle, at)
    start = next((p for p in out.lossy if p >= confirmed and (char_end is None or p <= char_end)), None)
    if start is None:
        return False
    entries = oracle.entries or ()
    stop = len(entries) if char_end is None else char_end + 1
    out.pairs = [pair for pair in out.pairs if pair[0] < start]
    out.disagreements = [d for d in out.disagreements if d.position is not None and d.position < start]
    out.judged, out.complete, out.excused_at = start, False, None
    tie = next((j for j in range(start, stop) if entries[j].margin < out.margin + FLOAT_SLACK), None)
    if tie is not None:
        out.excused_at = tie
        return True
    out.disagreements.append(Disagreement(
        out.case, "token", f"token {start} onwards: the target's tokens, given without bytes, spell "
        f"{target.content[len(oracle.text_of(start)):][:20]!r} where the reference's spell "
        f"{oracle.content[len(oracle.text_of(start)):][:20]!r}, and no near-tie lies between", start,
        {"after": _context(oracle, start), **entries[start].show()}, {"content": target.content}))
    return True


def _confirmed(oracle: Answer, at: int) -> int:
    """How many leading oracle tokens end on a character boundary within the first `at` characters."""
    raw, count = b"", 0
    for j, entry in enumerate(oracle.entries or ()):
        raw += entry.chosen.text_bytes
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(text) > at:
            break
        count = j + 1
    return count


def _align_text(case: str, oracle: Answer, target: Answer, tol: Tolerance) -> Alignment:
    """No logprobs from the target: its content must hold the oracle's text up to the oracle's first near-tie."""
    out = Alignment(case, tol.margin, by_text=True)
    entries = oracle.entries or ()
    secure = next((i for i, e in enumerate(entries) if e.margin < tol.margin + FLOAT_SLACK), len(entries))
    out.judged = secure
    if secure < len(entries):
        out.excused_at = secure
    elif target.content == oracle.content:
        out.complete = True
    elif target.content.startswith(oracle.content) and oracle.finish_reason != "length":
        out.excused_at = secure  # went on past the reference's end of turn, whose margin is unknown
    return _finish(out, oracle, target)


def chosen_disagreements(alignment: Alignment, tol: Tolerance) -> list[Disagreement]:
    """Judged positions whose chosen logprob lies outside the interval the tolerance allows."""
    found = []
    for i, o, t in alignment.pairs:
        interval = chosen_interval(o.chosen.logprob, tol.margin)
        if not within(t.chosen.logprob, interval):
            found.append(Disagreement(
                alignment.case, "chosen-logprob",
                f"token {i} {o.chosen.token!r}: logprob {t.chosen.logprob:.6g}, the reference's is "
                f"{o.chosen.logprob:.6g} (allowed {interval[0]:.6g} to {interval[1]:.6g})",
                i, {**o.show(), "allowed": [round(interval[0], 6), round(interval[1], 6)]}, t.show()))
    return found


def top_set_disagreements(alignment: Alignment, tol: Tolerance) -> list[Disagreement]:
    """Judged positions whose alternatives differ from the oracle's beyond a near-tie at the list's end."""
    found = []
    for i, o, t in alignment.pairs:
        problem = top_set_problem(o, t, tol)
        if problem:
            found.append(Disagreement(alignment.case, "top-set", f"token {i} {o.chosen.token!r}: {problem}", i,
                                      o.show(), t.show()))
    return found


def top_set_problem(o: Entry, t: Entry, tol: Tolerance) -> str | None:
    """Why the target's alternatives cannot be the oracle's top-k within the tolerance (None: they can)."""
    k = min(len(o.tops), len(t.tops))
    if k == 0:
        return None
    last = o.tops[k - 1].logprob
    listed = t.tops[:k]
    for y in o.tops[:k]:
        if not any(same_token(y, x) for x in listed) and y.logprob - last > tol.margin + FLOAT_SLACK:
            return (f"the reference's alternative {y.token!r} ({y.logprob:.4g}) leads its last listed one by more "
                    f"than {tol.margin:g}, yet the target does not list it")
    anchor = next((a for a in o.tops[:k] if any(same_token(a, x) for x in listed)), None)
    for x in listed:
        known = o.top_logprob(x)
        if known is not None:
            if known < last - tol.margin - FLOAT_SLACK:
                return (f"the target lists {x.token!r}, which the reference ranks at {known:.4g}, more than "
                        f"{tol.margin:g} below its last listed alternative")
            continue
        if len(o.tops) > k and o.tops[-1].logprob < last - tol.margin - FLOAT_SLACK:
            return f"the target lists {x.token!r}, which the reference ranks below its listed alternatives"
        t_anchor = None if anchor is None else t.top_logprob(anchor)
        if anchor is not None and t_anchor is not None and \
                x.logprob - t_anchor > last - anchor.logprob + tol.margin + FLOAT_SLACK:
            return (f"the target lists {x.token!r}, which the reference does not, {x.logprob - t_anchor:.4g} "
                    f"from {anchor.token!r}, where the reference's last alternative is "
                    f"{last - anchor.logprob:.4g} from it")
    return None


def mean_chosen_difference(alignments: list[Alignment]) -> tuple[float, int]:
    """Mean |delta logprob| of the chosen tokens over every judged position, and their count."""
    diffs = [abs(o.chosen.logprob - t.chosen.logprob) for a in alignments for _, o, t in a.pairs]
    return (sum(diffs) / len(diffs) if diffs else 0.0), len(diffs)
