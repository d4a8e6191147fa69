"""Find the exercise regions marked in the sources, and replace their bodies.

A region is a run of lines inside a function, between two plain comments at
the indentation of its body::

    def im2col(x, kh, kw, stride, pad):
        \"\"\"...docstring stays for the student...\"\"\"
        # exercise: im2col
        n, c, h, w = x.shape
        ...
        # end exercise

Several regions may carry the same name (a forward and a backward); they
form one exercise.
"""

import re
from dataclasses import dataclass

from ..errors import UsageError

_START = re.compile(r"^(?P<indent>[ ]*)# exercise: (?P<name>[a-z0-9_]+)\s*$")
_END = re.compile(r"^[ ]*# end exercise\s*$")


@dataclass
class Region:
    """One marked region: ``lines[start]`` is the opening marker, ``lines[end]`` the closing one."""

    name: str
    indent: str
    start: int
    end: int
    body: list

    @property
    def solution_lines(self):
        """The non-blank, stripped lines of the body."""
        return [line.strip() for line in self.body if line.strip()]


def find_regions(text, where="<text>"):
    """Every marked region of ``text`` in order (a UsageError for an unclosed or nested marker)."""
    lines = text.splitlines(keepends=True)
    regions, open_at = [], None
    for i, line in enumerate(lines):
        start = _START.match(line)
        if start:
            if open_at is not None:
                raise UsageError(f"{where}:{i + 1}: exercise region opened inside another")
            open_at = (i, start.group("name"), start.group("indent"))
        elif _END.match(line):
            if open_at is None:
                raise UsageError(f"{where}:{i + 1}: '# end exercise' without an opening marker")
            s, name, indent = open_at
            regions.append(Region(name, indent, s, i, lines[s + 1:i]))
            open_at = None
    if open_at is not None:
        raise UsageError(f"{where}:{open_at[0] + 1}: exercise region {open_at[1]!r} is never closed")
    return regions


def replace_bodies(text, names, body_for, where="<text>"):
    """``text`` with the body of every region named in ``names`` replaced by ``body_for(region)``.

    ``body_for`` returns the new body as a list of lines (with their line ends);
    the markers stay, so the region can be found and filled again.
    """
    lines = text.splitlines(keepends=True)
    for region in reversed(find_regions(text, where)):
        if region.name in names:
            lines[region.start + 1:region.end] = body_for(region)
    return "".join(lines)


def stub(region, task):
    """The one-line body of a blanked region: raise NotImplementedError naming the exercise and its task."""
    message = f"exercise {region.name}: {task}".replace("\\", "\\\\").replace('"', '\\"')
    return [f'{region.indent}raise NotImplementedError("{message}")\n']
