"""Reading published pickles of arrays without running their code.

EGHN ships its motion data as pickles of NumPy arrays, lists and numbers. The full unpickler would call whatever a
crafted file names (``os.system``, ``builtins.eval``, ...), so these files are read by one that resolves only the
three globals a pickled ``ndarray`` needs, and refuses every other name before anything is called.
"""

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # NumPy 1
    from numpy.core.multiarray import _reconstruct

#: (module, name) of every global a pickle of arrays, lists, tuples and numbers may name. NumPy 2 pickles name
#: ``numpy._core``; NumPy 1 (the published files) ``numpy.core``.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a pickle of arrays never needs (refused: it could run code)"
            ) from None


def _check_plain(value: Any, path: Path, seen: set[int] | None = None) -> None:
    """ValueError unless ``value`` holds only numeric arrays, lists, tuples, dicts, numbers and strings. Each
    container is looked at once (``seen``: their ids), so a pickle whose lists share references is checked in
    linear time, not once per path to each."""
    seen = set() if seen is None else seen
    if isinstance(value, (list, tuple, dict)):
        if id(value) in seen:
            return
        seen.add(id(value))
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise ValueError(f"{path}: holds an array of Python objects; expected numeric arrays")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, path, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, path, seen)
            _check_plain(item, path, seen)
    elif not isinstance(value, (int, float, complex, str, bytes, bool, np.generic, type(None))):
        raise ValueError(f"{path}: holds a {type(value).__name__}; expected arrays, lists and numbers")


def load_array_pickle(path: str | Path) -> Any:
    """The content of a pickle of NumPy arrays, lists, tuples, dicts and numbers; ValueError for anything else
    (a crafted file is refused before any of its code runs)."""
    path = Path(path)
    try:
        value = _ArrayUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise ValueError(f"{path}: not a pickle of arrays ({type(error).__name__}: {error})") from None
    _check_plain(value, path)
    return value
