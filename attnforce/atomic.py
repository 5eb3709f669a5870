"""Output files: checked against the inputs before a run, then written whole or not at all."""

import contextlib
import errno
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


#: The watcher of this process's temporary outputs (:func:`_watch`). It reads lines ``+"path"`` (made) and
#: ``-"path"`` (renamed or removed), each path a JSON string so that a newline in a file name cannot split a line.
#: When its input ends, because this process ended however it ended (SIGKILL included), it removes the temporary
#: files still listed and the empty folders made for them.
WATCHER_CODE = """
import json, os, sys
pending = {}
for line in sys.stdin:
    sign, path = line[0], json.loads(line[1:])
    if sign == "+":
        pending[path] = None
    else:
        pending.pop(path, None)
for path in sorted(pending, key=len, reverse=True):
    try:
        os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    except OSError:
        pass
"""
_watchers: dict[int, subprocess.Popen] = {}
#: Held while finished outputs are renamed to their names, so that :func:`abandon_outputs` never ends the process
#: between the renames of one run's files.
_committing = threading.RLock()


def _watch(sign: str, path: Path) -> None:
    """Tell this process's watcher that ``path`` was made (``+``) or is done with (``-``); the watcher starts on
    first use, in its own session so that a signal to this process's group does not stop it too."""
    watcher = _watchers.get(os.getpid())
    if watcher is None:
        watcher = subprocess.Popen(
            [sys.executable, "-c", WATCHER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        _watchers[os.getpid()] = watcher  # keyed by process: a forked child starts its own
    try:
        watcher.stdin.write(f"{sign}{json.dumps(os.path.abspath(path))}\n")
        watcher.stdin.flush()
    except OSError:  # the watcher is gone: the next run's clean-up (:func:`_remove_stale_partials`) remains
        pass


def abandon_outputs() -> None:
    """Remove this process's temporary outputs now, for a process about to end without unwinding (``os._exit``):
    once no output is being renamed, the watcher's input is closed and it is given a few seconds to remove what it
    lists. The commit lock is kept, so that nothing is renamed after."""
    _committing.acquire()
    watcher = _watchers.pop(os.getpid(), None)
    if watcher is None:
        return
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        watcher.stdin.close()
        watcher.wait(timeout=5)


#: The installed package: its embedded models and data are inputs of every command, never outputs.
PACKAGE = Path(__file__).resolve().parent
#: Characters of an output's stem kept in its temporary name, so that a legal long name stays legal (255 bytes).
TEMPORARY_STEM = 100


def _temporary_stem(path: Path) -> str:
    return path.stem[:TEMPORARY_STEM]


def _remove_stale_partials(path: Path) -> None:
    """Remove temporary files of ``path`` that a killed process left (their writer's process id is gone)."""
    stem = _temporary_stem(path)
    pattern = re.compile(rf"\.{re.escape(stem)}\.(\d+)-[a-z0-9_]{{8}}\.partial{re.escape(path.suffix)}")
    if not path.parent.is_dir():
        return
    for candidate in path.parent.glob(f".{glob.escape(stem)}.*.partial{glob.escape(path.suffix)}"):
        match = pattern.fullmatch(candidate.name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            candidate.unlink(missing_ok=True)


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it to ``path`` if the block succeeds, remove
    it if the block raises. A crash or an error never leaves a partial file under the final name, and the
    temporary files of a killed earlier writer of ``path`` (named after its process id) are removed first."""
    path = Path(path)
    if path.resolve().is_relative_to(PACKAGE):  # the API's writers too: the embedded models are everyone's inputs
        raise ValueError(f"{path} is inside the installed attnforce package: write it elsewhere")
    made = make_folders(path.parent)
    _remove_stale_partials(path)
    handle, tmp = tempfile.mkstemp(  # in the physical folder: tempfile reads ``link/..`` as text
        dir=path.parent.resolve(), prefix=f".{_temporary_stem(path)}.{os.getpid()}-", suffix=f".partial{path.suffix}"
    )
    os.close(handle)
    for folder in made:
        _watch("+", folder)
    _watch("+", Path(tmp))
    done = False
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; give them the usual permissions
        with _committing:
            os.replace(tmp, path)
            done = True
    finally:
        Path(tmp).unlink(missing_ok=True)
        if not done:  # the folders made for this output go too, if nothing else was put there
            remove_empty_folders(made)
        for finished in (Path(tmp), *made):
            _watch("-", finished)


@contextmanager
def atomic_outputs(paths: Iterable[str | Path]) -> Iterator[dict[Path, Path]]:
    """:func:`atomic_output` for the files of one run: yields ``{path: temporary path}``; every file is renamed to
    its path only once the whole block has succeeded, so a run that fails while writing its last output leaves none
    of the others either."""
    with ExitStack() as stack:
        yield {Path(path): stack.enter_context(atomic_output(path)) for path in paths}
        with _committing:  # all renamed, or (the block having raised) none
            stack.close()


def make_folders(folder: str | Path) -> list[Path]:
    """Make ``folder`` and its missing parents; returns the folders made, outermost first, as physical paths (in
    ``link/../run`` the ``..`` leaves the link's target, not the folder that holds the link)."""
    physical = Path(folder).resolve()
    made = [parent for parent in reversed((physical, *physical.parents)) if not parent.exists()]
    Path(folder).mkdir(parents=True, exist_ok=True)  # a dangling link named ``folder`` is an error, not followed
    return made


def remove_empty_folders(made: list[Path]) -> None:
    """Remove the folders of :func:`make_folders` that are still empty, deepest first (what another process put
    there meanwhile stays, and so does its folder)."""
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            folder.rmdir()


#: Bytes one component of a path may have (NAME_MAX of Linux's and macOS's file systems).
NAME_MAX = 255


def file_name_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot name a file: it is empty, or one of its components is longer than :data:`NAME_MAX`
    bytes; None when it can."""
    text = os.fspath(path)
    if not text.strip():
        return f"{text!r} is empty: give a file name"
    long = next((part for part in Path(text).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        return (
            f"{long[:24]}... is {len(os.fsencode(long))} bytes, more than the {NAME_MAX} a file or folder name may "
            "have: give a shorter name"
        )
    return None


def check_suffix(what: str, path: str | Path, suffix: str) -> None:
    """ValueError unless ``path`` can name a file (:func:`file_name_problem`) and ends in ``suffix`` (in any case):
    a file must be what its name says."""
    problem = file_name_problem(path)
    if problem:
        raise ValueError(f"{what}: {problem}")
    if Path(path).suffix.lower() != suffix:
        raise ValueError(f"{what} {path} must end in {suffix}: the file would not be what it is named")


def check_outputs(outputs: Mapping[str, str | Path], inputs: Mapping[str, str | Path | None] = ()) -> None:
    """Refuse, before any work, outputs that would destroy an input or each other, or cannot be written.

    Args:
        outputs: ``{what: path}`` of every file a run will write, e.g. ``{"--dcd": "x.dcd", "topology": "x.pdb"}``;
            a path's suffix must be the one its role implies where the caller checked it.
        inputs: ``{what: path}`` of the files it reads (None entries, e.g. embedded models, are skipped).

    Raises:
        ValueError: two outputs are the same file, an output is an input, an output is a directory, a device, a
            pipe or a file of the installed package, its folder cannot be written, or a DCD's path is not ASCII
            (mdtraj's DCD writer encodes paths as ASCII).
    """
    seen: dict[Path, str] = {}
    existing = {what: Path(p) for what, p in dict(inputs).items() if p is not None and Path(p).is_file()}
    read = {path.resolve(): what for what, path in existing.items()}
    for what, path in outputs.items():
        path = Path(path)
        resolved = path.resolve()
        same = next((w for w, p in existing.items() if path.is_file() and os.path.samefile(p, path)), None)
        if resolved in read or same:
            alias = "" if resolved in read else " (the same file under another name)"
            raise ValueError(
                f"{what} {path} is the input {read.get(resolved, same)}{alias}: writing it would destroy the input"
            )
        if resolved in seen:
            raise ValueError(f"{what} and {seen[resolved]} are the same file {path}: give each its own name")
        seen[resolved] = what
        if path.is_dir():
            raise ValueError(f"{what} {path} is a directory: give a file name")
        if path.exists() and not path.is_file():
            raise ValueError(
                f"{what} {path} exists and is not a regular file (a device, pipe or socket): give a file name"
            )
        if resolved.is_relative_to(PACKAGE):
            raise ValueError(f"{what} {path} is inside the installed attnforce package: write it elsewhere")
        if path.suffix.lower() == ".dcd" and not str(path.absolute()).isascii():
            raise ValueError(
                f"{what} {path}: mdtraj's DCD writer takes only ASCII paths (letters without accents, no symbols "
                "beyond ASCII, in the folder names too): choose another name or folder"
            )
        folder = next((p for p in resolved.parents if p.exists()), None)
        if folder is None or not folder.is_dir():
            raise ValueError(f"{what} {path}: {folder} is not a directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"{what} {path}: no permission to write in {folder}")
        if path.exists() and not os.access(path, os.W_OK):
            raise ValueError(f"{what} {path} exists and is read-only: choose another name or make it writable")


def file_size_limit() -> int | None:
    """This process's largest file in bytes (``ulimit -f``), None when unlimited."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def write_failure(path: str | Path, shown: str | Path) -> OSError:
    """The error for a writer that failed on ``path`` (``shown`` to the user) without saying why, as mdtraj's DCD
    writer does: EFBIG when the file reached this process's size limit, ENOSPC when its disk is full, else EIO."""
    import shutil

    path, limit = Path(path), file_size_limit()
    size = path.stat().st_size if path.is_file() else 0
    if limit is not None and size + 65536 >= limit:
        cause = errno.EFBIG
    elif shutil.disk_usage(path.parent).free < 1 << 20:
        cause = errno.ENOSPC
    else:
        cause = errno.EIO
    return OSError(cause, os.strerror(cause), str(shown))
