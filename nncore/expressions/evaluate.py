"""Exact evaluation of an ASCII expression or linear equation: a recursive-descent parser over Fractions.

Grammar (``*`` and ``/`` bind tighter than ``+`` and ``-``, both left-associative;
juxtaposition is multiplication: ``2(3+4)``, ``2x``, ``(1)(2)``)::

    statement := expr [ '=' [ expr ] ]          a trailing '=' means "evaluate"
    expr      := term { ('+' | '-') term }
    term      := unary { ('*' | '/') unary | primary }
    unary     := '-' primary | primary            (a unary minus only first, or after '(' or '=')
    primary   := number | 'x' | 'y' | '(' expr ')'

Every value is kept as a linear form ``a*v + b`` (a, b Fractions, v the one
variable), so an equation ``L = R`` linear in one variable is solved as
``v = (b_R - b_L) / (a_L - a_R)``. Never ``eval``: the input is only ever
tokenised and parsed here.
"""

from dataclasses import dataclass
from fractions import Fraction

from ..errors import BracketError, NotSolvableError, SyntaxExpressionError, ZeroDivisionExpression

TOKENS = set("0123456789+-*/()=xy")


@dataclass(frozen=True)
class Linear:
    """The linear form ``a * var + b``; ``var`` is None for a constant."""

    a: Fraction
    b: Fraction
    var: str | None = None

    @staticmethod
    def const(value):
        return Linear(Fraction(0), Fraction(value))

    @property
    def constant(self):
        return self.a == 0

    def _var(self, other):
        if self.var and other.var and self.var != other.var and not (self.constant or other.constant):
            raise NotSolvableError(f"the expression mixes the variables {self.var} and {other.var}; "
                                   "nncore solves equations in one variable")
        return (self.var if not self.constant else None) or (other.var if not other.constant else None)

    def __add__(self, other):
        return Linear(self.a + other.a, self.b + other.b, self._var(other))

    def __neg__(self):
        return Linear(-self.a, -self.b, self.var)

    def __sub__(self, other):
        return self + (-other)

    def __mul__(self, other):
        if not self.constant and not other.constant:
            raise NotSolvableError(f"{self.var} * {other.var} makes the equation non-linear; "
                                   "nncore solves linear equations only")
        var = self._var(other)
        return Linear(self.a * other.b + other.a * self.b, self.b * other.b, var)

    def __truediv__(self, other):
        if not other.constant:
            raise NotSolvableError(f"dividing by an expression in {other.var} makes the equation non-linear; "
                                   "nncore solves linear equations only")
        if other.b == 0:
            raise ZeroDivisionExpression("division by zero")
        return Linear(self.a / other.b, self.b / other.b, self.var)


@dataclass(frozen=True)
class Result:
    """What a statement means: ``value`` (exact) and, for an equation, the ``variable`` solved for."""

    value: Fraction
    variable: str | None = None


def tokenize(text):
    """ASCII text -> a list of tokens: numbers (digit strings) and one-character symbols. Spaces ignored."""
    tokens, i = [], 0
    text = text.replace(" ", "")
    while i < len(text):
        c = text[i]
        if c.isdigit():
            j = i
            while j < len(text) and text[j].isdigit():
                j += 1
            tokens.append(text[i:j])
            i = j
            continue
        if c not in TOKENS:
            raise SyntaxExpressionError(f"unexpected character {c!r} at position {i + 1}; "
                                        "use digits, + - * / ( ) =, x and y")
        tokens.append(c)
        i += 1
    return tokens


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.i = tokens, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def where(self):
        return f"symbol {self.i + 1}" if self.i < len(self.tokens) else "the end"

    def statement(self):
        left = self.expr()
        if self.peek() != "=":
            self.finish()
            return left, None
        self.take()
        if self.peek() is None:      # trailing '=': evaluate the left side
            return left, None
        right = self.expr()
        self.finish()
        return left, right

    def finish(self):
        tok = self.peek()
        if tok == ")":
            raise BracketError(f"a closing bracket at {self.where()} has no opening bracket")
        if tok == "=":
            raise SyntaxExpressionError(f"a second '=' at {self.where()}; write at most one")
        if tok is not None:
            raise SyntaxExpressionError(f"unexpected {tok!r} at {self.where()}")

    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self):
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "/"):
                self.take()
                rhs = self.unary()
                value = value * rhs if tok == "*" else value / rhs
            elif tok is not None and (tok[0].isdigit() or tok in ("x", "y", "(")):
                value = value * self.primary()          # juxtaposition: 2x, 2(3), (1)(2)
            else:
                return value

    def unary(self):
        if self.peek() == "-":
            if self.i > 0 and self.tokens[self.i - 1] not in ("(", "="):
                raise SyntaxExpressionError(f"two operators in a row at symbol {self.i + 1} "
                                            f"({self.tokens[self.i - 1]!r} then '-'); a minus sign may start "
                                            "the expression or follow '(' or '='")
            self.take()
            return -self.primary()
        return self.primary()

    def primary(self):
        tok = self.take()
        if tok is None:
            raise SyntaxExpressionError("the expression ends with an operator; finish it with a number")
        if tok[0].isdigit():
            return Linear.const(int(tok))
        if tok in ("x", "y"):
            return Linear(Fraction(1), Fraction(0), tok)
        if tok == "(":
            inner = self.expr()
            if self.peek() != ")":
                raise BracketError(f"an opening bracket is not closed (expected ')' at {self.where()})")
            self.take()
            return inner
        if tok == ")":
            raise BracketError(f"a closing bracket at symbol {self.i} has nothing to close or follows an operator")
        raise SyntaxExpressionError(f"two operators in a row at symbol {self.i} ({tok!r} follows an operator)")


def evaluate(text):
    """Evaluate an ASCII expression (``"3+(5*(2-7))="``) or solve a linear equation (``"2x+3=11"``).

    Returns a :class:`Result`: the exact value as a Fraction, and the variable for an equation.
    Raises BracketError, SyntaxExpressionError, ZeroDivisionExpression or NotSolvableError (one line each).
    """
    tokens = tokenize(text) if isinstance(text, str) else list(text)
    if not tokens:
        raise SyntaxExpressionError("the expression is empty")
    left, right = _Parser(tokens).statement()
    if right is None:
        if not left.constant:
            raise NotSolvableError(f"the expression contains the variable {left.var} but no equation; "
                                   "write an equation such as 2x+3=11")
        return Result(left.b)
    diff = left - right
    if diff.constant:
        state = "always true" if diff.b == 0 else "never true"
        raise NotSolvableError(f"the equation has no variable to solve for (it is {state})")
    return Result(-diff.b / diff.a, diff.var)


def format_value(value):
    """A Fraction as nncore prints it: ``"-22"`` or ``"1/12"`` (lowest terms)."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
