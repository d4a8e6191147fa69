"""From the classifier's top labels of each symbol to the most probable well-formed expression.

A beam search runs left to right over the symbols, extending each partial
reading by each of the symbol's top labels and keeping only the readings a
grammar allows so far. Where two neighbours may be one symbol written in
pieces (an ``=`` whose bars do not line up, an x drawn as two arcs ``)(``, a
5 whose bar does not touch its body), the union's labels are a second way
forward, over both at once: each reading takes one symbol or the other, and
its score decides: the union's probability times JOIN_PRIOR against the
product of the two parts'. The grammar: balanced brackets, an operator only
after an operand, a unary minus only first or after ``(`` or ``=``, at most
one ``=``, implicit multiplication (``2(3+4)``, ``2x``, ``)(``), no number
with a leading zero (``05``). A reading's
score is the sum of the log-probabilities of its labels.

x against ×: in isolation they are one glyph, so a symbol whose labels
include either is read both ways, each with the probability of the pair
together. Among readings that differ only there, context decides: between
two complete operands (``3×4``, ``)×(``) it is ×; otherwise (a coefficient's
variable, ``2x+3=11``) it is the variable. A reading that cannot be evaluated
(a variable without an equation) gives way to the next one.
"""

import math
from dataclasses import dataclass

#: model class name -> (ASCII token, written form)
LABEL_TOKENS = {
    **{str(d): (str(d), str(d)) for d in range(10)},
    "x": ("x", "x"), "y": ("y", "y"), "times": ("*", "×"), "div": ("/", "÷"), "slash": ("/", "/"),
    "plus": ("+", "+"), "minus": ("-", "-"), "eq": ("=", "="), "lparen": ("(", "("), "rparen": (")", ")"),
}

#: the glyph drawn the same way as the letter x and the times sign
X_PAIR = ("x", "times")
#: the prior odds of one symbol written in two pieces against two symbols written close together: the
#: model reads the union of two close symbols (``11``, ``8)``) as one symbol with confidence (it has never
#: seen such a picture), so a union must be 1.25 times as probable as its parts together to be taken
#: (0.5 lost photos' broken 5s and 4s, 1.0 read ``11`` as one 1; measured on composed expressions)
JOIN_PRIOR = 0.8


@dataclass(frozen=True)
class Reading:
    """One complete reading: ``labels`` (class names), ``tokens`` (ASCII), ``written``, its log-probability."""

    labels: tuple
    tokens: tuple
    written: tuple
    logp: float
    spans: tuple = ()

    @property
    def confidence(self):
        return math.exp(self.logp)

    @property
    def text(self):
        return "".join(self.tokens)


def _operand_end(tok):
    return tok is not None and (tok.isdigit() or tok in ("x", "y", ")", "0!"))


def _state_allows(state, tok):
    """Whether token ``tok`` may follow the partial reading whose grammar state is ``state``."""
    prev, depth, eq = state
    if tok.isdigit():
        return prev not in ("x", "y", "0!")    # no digit after a variable, no number with a leading 0
    if tok in ("x", "y"):
        return prev not in ("x", "y")
    if tok == "(":
        return True
    if tok == ")":
        return depth > 0 and _operand_end(prev)
    if tok == "-":
        return _operand_end(prev) or prev in (None, "(", "=")
    if tok in ("+", "*", "/"):
        return _operand_end(prev)
    if tok == "=":
        return not eq and depth == 0 and _operand_end(prev)
    return False


def _advance(state, tok):
    prev, depth, eq = state
    if tok == "0" and not (prev or "").isdigit() and prev != "0!":
        tok = "0!"                             # a 0 that starts a number: it must stand alone
    return (tok, depth + (tok == "(") - (tok == ")"), eq or tok == "=")


def _complete(state):
    prev, depth, eq = state
    return depth == 0 and (_operand_end(prev) or prev == "=")


def candidates(top, x_pair=X_PAIR):
    """The (label, probability) options of one symbol from its top list [(label, p), ...].

    x and × each stand for the pair: their probability is the pair's sum.
    """
    probs = dict(top)
    pair = sum(probs.get(k, 0.0) for k in x_pair)
    out = {}
    for label, p in top:
        if label in x_pair:
            for k in x_pair:
                out[k] = pair
        elif label in LABEL_TOKENS:
            out[label] = p
    return list(out.items())


def _x_preference(tokens, labels):
    """How many x/× readings agree with context (× between two operands, else the variable)."""
    agree = 0
    for i, label in enumerate(labels):
        if label not in X_PAIR:
            continue
        prev = tokens[i - 1] if i else None
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        between = _operand_end(prev) and nxt is not None and (nxt[0].isdigit() or nxt in ("(", "x", "y"))
        agree += (label == "times") == between
    return agree


def decode(tops, joins=None, beam=64, keep=16):
    """Readings of a sequence of symbols, best first.

    Inputs: tops, one list per symbol of (class name, probability), most probable first (the reader
    gives the top 4);
    joins, optional {i: the top list of symbols i and i + 1 read as one symbol}; a reading that takes
    a union counts JOIN_PRIOR into its probability.
    Returns up to ``keep`` complete readings sorted by log-probability, ties broken by the x/× context
    rule; each reading's ``spans`` holds, per label, the range (start, stop) of the symbols it reads.
    An empty list when no sequence of these labels is well formed.
    """
    joins = joins or {}
    n, log_join = len(tops), math.log(JOIN_PRIOR)
    arriving = {0: [((), (), 0.0, (None, 0, False))]}     # position -> partial readings that end there
    for pos in range(n):
        beams = sorted(arriving.pop(pos, []), key=lambda b: -b[2])[:beam]
        for width, top in ((1, tops[pos]), (2, joins.get(pos) if pos + 2 <= n else None)):
            if top is None:
                continue
            ahead, prior = arriving.setdefault(pos + width, []), (0.0 if width == 1 else log_join)
            for labels, spans, logp, state in beams:
                for label, p in candidates(top):
                    tok = LABEL_TOKENS[label][0]
                    if p > 0 and _state_allows(state, tok):
                        ahead.append((labels + (label,), spans + ((pos, pos + width),),
                                      logp + prior + math.log(p), _advance(state, tok)))
    done = []
    for labels, spans, logp, state in sorted(arriving.get(n, []), key=lambda b: -b[2])[:beam]:
        if _complete(state):
            tokens = tuple(LABEL_TOKENS[k][0] for k in labels)
            written = tuple(LABEL_TOKENS[k][1] for k in labels)
            done.append(Reading(labels, tokens, written, logp, spans))
    done.sort(key=lambda r: (-round(r.logp, 9), -_x_preference(r.tokens, r.labels)))
    return done[:keep]
