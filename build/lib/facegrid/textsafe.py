"""Text from jobs and from users' folders, made safe to print, log and write to CSV.

Paths and hosts are hostile display text (docs/protocol.md): a file name may hold
terminal escapes, and a stored path may begin with '=' to become a spreadsheet
formula. Everything that prints, logs or writes such text goes through here.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode marks that reorder or hide text
UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(value: object) -> str:
    """The text with every control character shown as \\xNN or \\uNNNN."""
    return UNSAFE_RE.sub(_escape, str(value))


def csv_cell(value: object) -> object:
    """A cell a spreadsheet shows as text: printable, and a leading = + - @ gets a quote.

    Numbers stay numbers; only text is touched.
    """
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if text.startswith(FORMULA_START) else text
