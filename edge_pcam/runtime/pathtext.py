"""File names as text that every writer accepts (CSV, JSON, the terminal), whatever bytes they hold.

On Linux a file name is bytes. Python decodes names that are not valid UTF-8
with surrogate escapes (`os.fsdecode`), which UTF-8 writers refuse: a CSV or
JSON file would crash half written. Here each byte that is not part of valid
UTF-8 is written as `\\xNN` (its hexadecimal value, always 80 to ff), e.g. the
Latin-1 name `naïve.png` becomes `na\\xefve.png`; valid UTF-8 names, accented
or not, are written unchanged. The name's bytes come back with
`re.sub(rb"\\\\x([89a-f][0-9a-f])", lambda m: bytes.fromhex(m[1].decode()), text.encode())`.
"""

from __future__ import annotations

import os


def printable(text: str) -> str:
    """`text` with the undecodable bytes it carries (surrogate escapes) written as `\\xNN`."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def printable_path(path: str | bytes | os.PathLike) -> str:
    """A path as printable text (see the module docstring)."""
    return printable(os.fsdecode(path))
