"""Input files, checked the same way everywhere: a missing file, a directory or a binary file named in one line."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def require_file(path: str | Path, what: str, hint: str = "") -> Path:
    """``path`` as a Path when it is a file; FileNotFoundError ("no such {what} file") or IsADirectoryError naming it
    otherwise, each followed by ``hint`` (such as the embedded names that may be given instead)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a {what} file{hint}")
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} is not a regular file (a pipe or a device?): save it to a file and give that")
    if not path.is_file():
        raise FileNotFoundError(f"no such {what} file: {path}{hint}")
    return path


@contextmanager
def text_file(path: str | Path, what: str) -> Iterator[None]:
    """Turn a UnicodeDecodeError met while reading ``path`` into a ValueError saying it is not a {what} text file."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: {_undecodable(path, error)}; expected {what}") from None


#: Byte-order marks of UTF-16 and UTF-32 text, which Windows editors write ("Unicode" in Notepad).
_WIDE_TEXT_MARKS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def _undecodable(path: str | Path, error: UnicodeDecodeError) -> str:
    """What bytes that are not UTF-8 most likely are: wide text (a byte-order mark, or every other byte zero), text in
    a one-byte encoding such as Latin-1 (printable apart from a few bytes above 127), or binary data. Judged from the
    file's first MiB when it can be read again (the error holds only the chunk being decoded), else from the chunk."""
    data, at = bytes(error.object), error.start
    try:
        with open(path, "rb") as stream:
            head = stream.read(1 << 20)
        head.decode("utf-8")
    except UnicodeDecodeError as first:
        if first.start < len(head) - 4:  # not a character cut at the end of the MiB
            data, at = head, first.start
    except OSError:
        pass
    wide = next((name for mark, name in _WIDE_TEXT_MARKS.items() if data.startswith(mark)), None)
    if wide is None and len(data) >= 16 and data[1::2].count(0) > 0.9 * len(data[1::2]):
        wide = "UTF-16"
    if wide is not None:
        return f"{wide} text, which attnforce does not read: save it as UTF-8"
    printable = sum(32 <= byte < 127 or byte in b"\t\n\r" for byte in data)
    if b"\0" not in data and printable >= 0.95 * len(data):
        line, character = data.count(b"\n", 0, at) + 1, data[at : at + 1].decode("latin-1")
        return (
            f"text in an encoding other than UTF-8 (byte 0x{data[at]:02X} on line {line}, {character!r} in Latin-1): "
            "save it as UTF-8"
        )
    return f"not a text file (undecodable byte at offset {at})"


def unreadable_npz(path: str | Path, error: Exception) -> ValueError:
    """The error for an ``.npz`` that NumPy could not read, without NumPy's advice to unpickle what it holds."""
    text = " ".join(str(error).split())
    if "pickle" in text:
        text = "it holds pickled Python objects, which attnforce never unpickles"
    return ValueError(f"{path}: not a readable .npz file ({text})")


def refuse_shadowed(name: str | Path, what: str) -> None:
    """ValueError when ``name``, the name of a built-in ``what`` (an embedded model, a preset), is also a file here:
    silently taking either would run what the user did not mean."""
    if Path(name).exists():
        raise ValueError(
            f"{name!r} names both {'an' if what[0] in 'aeiou' else 'a'} {what} and a file here; give ./{name} for the "
            f"file, or run elsewhere for the {what}"
        )


def embedded_or_file(name: str | Path, embedded: dict[str, str], what: str) -> Path | None:
    """The packaged file ``embedded[name]`` (in ``attnforce/data``) when ``name`` is one of its keys, else None.

    ValueError when a file of that name exists too (:func:`refuse_shadowed`).
    """
    if str(name) not in embedded:
        return None
    refuse_shadowed(name, f"embedded {what}")
    from importlib import resources

    return Path(str(resources.files("attnforce") / "data" / embedded[str(name)]))
