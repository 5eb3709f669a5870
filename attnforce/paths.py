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
        raise ValueError(
            f"{path}: not a text file (undecodable byte at offset {error.start}); expected {what}"
        ) from None


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
