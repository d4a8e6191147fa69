"""Reading whole handwritten expressions: segment a line into symbols, classify them, decode, evaluate exactly.

- ``segment.py``: the picture's ink, ruled lines removed, parts grouped into symbols (scipy.ndimage);
- ``decode.py``: a beam search over each symbol's top labels under the expression grammar (x against ×
  from context; two close pieces read as one symbol or two);
- ``evaluate.py``: a recursive-descent parser over Fractions (linear equations in one variable solved);
- ``reader.py``: :func:`read_expression`, tying them together.
"""

from .evaluate import evaluate, format_value
from .reader import Expression, SymbolReading, read_expression

__all__ = ["Expression", "SymbolReading", "evaluate", "format_value", "read_expression"]
