"""Readers for MD17-style reference data, converting the file's units to Å and eV.

Files do not say their energy unit, so the caller does (``energy_unit``, forces in that unit per Å):
rMD17 aspirin extxyz of this project's data uses meV, rMD17 ethanol eV, MD17 ethanol kcal/mol; the public
MD17 and rMD17 ``.npz`` files use kcal/mol.
"""

import contextlib
import itertools
import logging
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

from attnforce.elements import atomic_number
from attnforce.paths import require_file, text_file, unreadable_npz
from attnforce.units import EV_PER_ENERGY_UNIT
from systems.frames import Frames, ScaledArray

logger = logging.getLogger(__name__)

#: The two public ``.npz`` layouts: (positions, atomic numbers, energies, forces) keys.
NPZ_LAYOUTS = {
    "md17": ("R", "z", "E", "F"),
    "rmd17": ("coords", "nuclear_charges", "energies", "forces"),
}


def _ev_per(energy_unit: str) -> float:
    if energy_unit not in EV_PER_ENERGY_UNIT:
        raise ValueError(f"unknown energy unit {energy_unit!r}; choose from {sorted(EV_PER_ENERGY_UNIT)}")
    return EV_PER_ENERGY_UNIT[energy_unit]


def _existing(path: str | Path) -> Path:
    return require_file(path, "data")


#: A word of an extended-XYZ comment line: characters other than blanks and quotes, and quoted runs, joined.
_COMMENT_WORD = re.compile(r"""(?:[^\s"']|"[^"]*"|'[^']*')+""")


def _comment_words(line: str) -> list[str]:
    """The words of ``line`` split as a shell would (blanks separate, quotes group and are removed), in time linear
    in its length (``shlex`` takes quadratic time: minutes for a 10 MB comment line); ValueError for a quote left
    open."""
    words, end = [], 0
    for match in _COMMENT_WORD.finditer(line):
        if line[end : match.start()].strip():  # skipped over something that is not blank: an unmatched quote
            break
        words.append(re.sub(r""""([^"]*)"|'([^']*)'""", lambda m: m.group(1) or m.group(2) or "", match.group()))
        end = match.end()
    if line[end:].strip():
        raise ValueError("No closing quotation")
    return words


def parse_extxyz_comment(line: str) -> dict[str, str]:
    """``key=value`` pairs of an extended-XYZ comment line (values may be quoted); ValueError for a quote left open
    or a key given twice (which value is meant cannot be told)."""
    try:
        tokens = _comment_words(line)
    except ValueError as error:
        raise ValueError(f"{error} in the comment line {line.strip()[:60]!r}: close the quote") from None
    fields = {}
    for token in tokens:
        if "=" in token:
            key, value = token.split("=", 1)
            if key.lower() in fields and fields[key.lower()] != value:
                raise ValueError(f"{key}= is given twice in the comment line ({fields[key.lower()]} and {value})")
            fields[key.lower()] = value
    return fields


def extxyz_columns(properties: str) -> dict[str, slice]:
    """Column slices of each property in ``Properties=name:type:count:...``; ValueError for a malformed one, or for
    positions or forces that are not three real columns."""
    parts = properties.split(":")
    if len(parts) % 3 or not all(count.isdigit() for count in parts[2::3]):
        raise ValueError(f"malformed Properties={properties!r} (name:type:count triples)")
    columns, start = {}, 0
    for name, kind, count in zip(parts[0::3], parts[1::3], parts[2::3], strict=True):
        if name.lower() in ("pos", "forces", "force") and (kind.upper(), count) != ("R", "3"):
            raise ValueError(
                f"Properties={properties!r} declares {name}:{kind}:{count}; positions and forces are three real "
                f"columns each ({name}:R:3)"
            )
        columns[name.lower()] = slice(start, start + int(count))
        start += int(count)
    return columns


def _check_column_order(positions: np.ndarray, forces: np.ndarray, numbers: list[int], properties: str) -> None:
    """ValueError when a frame's Properties order contradicts its rows: the columns named forces hold a molecule
    in Å (:func:`attnforce.geometry.bond_like_fraction` at least 0.9; molecules score 1, forces of rMD17 aspirin
    and ethanol below 0.9 in 99.8% of frames) and those named pos do not (below 0.75; forces score 0-0.71)."""
    from attnforce.geometry import bond_like_fraction

    if len(numbers) < 2 or not (np.all(np.isfinite(positions)) and np.all(np.isfinite(forces))):
        return  # left to the geometry checks
    if bond_like_fraction(positions, numbers) < 0.75 and bond_like_fraction(forces, numbers) >= 0.9:
        raise ValueError(
            f"Properties={properties!r} contradicts the rows: the columns it names forces hold a molecule's positions "
            "and those it names pos do not; put the names in the rows' order"
        )


#: The largest box vector component attnforce takes (Å): beyond it a "box" is a unit mistake or garbage.
MAX_BOX_LENGTH = 1e5


def extxyz_cell(fields: dict[str, str]) -> np.ndarray | None:
    """The periodic cell of an extended-XYZ comment's fields (:func:`parse_extxyz_comment`): (3, 3) Å, rows the
    ``Lattice`` vectors; None without a lattice or with ``pbc`` false in every direction. ValueError for a partly
    periodic ``pbc`` or a lattice that is not nine finite numbers spanning a volume."""
    if "lattice" not in fields:
        return None
    pbc = fields.get("pbc", "T T T").upper().replace("TRUE", "T").replace("FALSE", "F").split()
    pbc = pbc * 3 if len(pbc) == 1 else pbc
    if pbc == ["F", "F", "F"]:
        return None
    if pbc != ["T", "T", "T"]:
        raise ValueError(f"pbc={fields['pbc']!r}: attnforce takes boxes periodic in all three directions or none")
    try:
        cell = np.array([float(v) for v in fields["lattice"].split()]).reshape(3, 3)
    except ValueError:
        raise ValueError(f"Lattice={fields['lattice']!r} is not nine numbers (Å)") from None
    if not (np.all(np.abs(cell) <= MAX_BOX_LENGTH) and abs(np.linalg.det(cell)) > 0):  # NaN fails too
        raise ValueError(
            f"Lattice={fields['lattice']!r} is not a box of positive volume with components up to {MAX_BOX_LENGTH:g} Å"
        )
    return cell


def read_extxyz(path: str | Path, energy_unit: str) -> Frames:
    """Frames of one molecule from an extended-XYZ file with ``energy=`` and per-atom forces.

    Args:
        path: the file.
        energy_unit: unit of ``energy=`` (forces are read in that unit per Å); one of
            :data:`attnforce.units.EV_PER_ENERGY_UNIT`.
    """
    path = _existing(path)
    ev = _ev_per(energy_unit)
    # Two streaming passes: count the frames, then fill arrays allocated once (the text is never held whole).
    num_frames, num_atoms = _count_frames(path)
    numbers: list[int] | None = None
    positions = np.empty((num_frames, num_atoms, 3))
    forces = np.empty((num_frames, num_atoms, 3))
    energies = np.empty(num_frames)
    with open(path, encoding="utf-8-sig") as handle:
        line_number = 0
        for frame in range(num_frames):
            line = handle.readline()
            line_number += 1
            while not line.strip():
                line = handle.readline()
                line_number += 1
            header = handle.readline()
            rows = [handle.readline().split() for _ in range(num_atoms)]
            first_atom_line = line_number + 2
            where = f"{path}, line {line_number + 1}"  # the comment line, which every frame-level check concerns
            line_number += 1 + num_atoms
            try:
                comment = parse_extxyz_comment(header)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            if "energy" not in comment:
                raise ValueError(f"{where}: comment line has no energy= field")
            try:
                cell = extxyz_cell(comment)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            if cell is not None:
                raise ValueError(
                    f"{where}: a periodic frame (Lattice=...); training and evaluation read isolated structures only "
                    '(set pbc="F F F" if the cell is not meant)'
                )
            properties = comment.get("properties", "species:S:1:pos:R:3:forces:R:3")
            try:
                columns = extxyz_columns(properties)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            force_key = "forces" if "forces" in columns else "force"
            if columns.get("species") != slice(0, 1) or "pos" not in columns or force_key not in columns:
                raise ValueError(f"{where}: Properties must start with species and include pos and forces")
            try:
                energies[frame] = float(comment["energy"])
            except ValueError:
                raise ValueError(f"{where}: energy={comment['energy']!r} is not a number") from None
            width = max(column.stop for column in columns.values())
            frame_numbers = []
            for atom, row in enumerate(rows):
                try:
                    if len(row) != width:
                        raise ValueError(f"{len(row)} values where Properties={properties!r} declares {width}")
                    frame_numbers.append(atomic_number(row[0]))
                    positions[frame, atom] = [float(v) for v in row[columns["pos"]]]
                    forces[frame, atom] = [float(v) for v in row[columns[force_key]]]
                except ValueError as error:
                    raise ValueError(f"{path}, line {first_atom_line + atom}: bad atom line ({error})") from None
            if numbers is None:
                try:
                    _check_column_order(positions[frame], forces[frame], frame_numbers, properties)
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from None
                numbers = frame_numbers
            elif frame_numbers != numbers:
                raise ValueError(f"{where}: atoms differ from the first frame's; one molecule per file")
    energies *= ev
    forces *= ev
    return Frames(
        atomic_numbers=np.array(numbers, dtype=np.int64),
        positions=positions,
        energies=energies,
        forces=forces,
        source=str(path),
    )


def _count_frames(path: Path) -> tuple[int, int]:
    """(frames, atoms per frame) of an XYZ file, streaming; ValueError for a truncated file or differing sizes."""
    with text_file(path, "XYZ"):
        return _count_frames_of_text(path)


def _count_frames_of_text(path: Path) -> tuple[int, int]:
    num_frames, num_atoms, line_number = 0, None, 0
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            line_number += 1
            if not line.strip():
                continue
            try:
                count = int(line)
            except ValueError:
                raise ValueError(f"{path}, line {line_number}: expected an atom count, found {line[:60]!r}") from None
            if count <= 0:
                raise ValueError(f"{path}, line {line_number}: the atom count is {count}; a frame needs atoms")
            if num_atoms is not None and count != num_atoms:
                raise ValueError(
                    f"{path}, line {line_number}: atoms differ from the first frame's; one molecule per file"
                )
            num_atoms = count
            skipped = sum(1 for _ in itertools.islice(handle, count + 1))
            if skipped < count + 1:
                raise ValueError(f"{path}, line {line_number}: file ends inside a frame of {count} atoms (truncated?)")
            line_number += skipped
            num_frames += 1
    if num_atoms is None:
        raise ValueError(f"{path}: no frames")
    return num_frames, num_atoms


def _npz_member(path: Path, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The array ``name`` of an ``.npz``: memory-mapped when the archive stores it uncompressed (``np.savez``, the
    public MD17 files), read once otherwise."""
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local_header = handle.read(30)
        if len(local_header) < 30 or local_header[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: array {name} has no valid zip entry (corrupt file?)")
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        data_start = info.header_offset + 30 + name_length + extra_length
        handle.seek(data_start)
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):  # 3.0 (UTF-8 field names) and later: let NumPy read it
            with archive.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: array {name} holds Python objects; it is not numeric data")
    if offset - data_start + int(np.prod(shape)) * dtype.itemsize > info.file_size:
        raise ValueError(f"{path}: array {name} is shorter than its header says (truncated file?)")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran_order else "C")


def _as_float64(values: np.ndarray, scale: float):
    """``scale * values`` as native float64: the array itself when nothing changes, else a :class:`ScaledArray`
    converting the frames that are read (another dtype or byte order, or a unit)."""
    if scale == 1.0 and values.dtype == np.dtype(np.float64):
        return values
    return ScaledArray(values, scale)


def read_npz(path: str | Path, energy_unit: str = "kcal/mol") -> Frames:
    """Frames from a public MD17 (``R, z, E, F``) or rMD17 (``coords, nuclear_charges, energies, forces``) file.

    Positions and forces are memory-mapped when the file stores them uncompressed (as the public files do): a
    million-frame file is read only where frames are used, and forces are converted to eV/Å as they are read.
    Compressed files (``np.savez_compressed``) are read into memory once.
    """
    path = _existing(path)
    ev = _ev_per(energy_unit)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise unreadable_npz(path, error) from None
    with archive:
        files = [name.removesuffix(".npy") for name in archive.namelist()]
        names = next((n for n in NPZ_LAYOUTS.values() if all(name in files for name in n)), None)
        if names is None:
            raise ValueError(
                f"{path}: keys {files} match neither MD17 {NPZ_LAYOUTS['md17']} nor rMD17 {NPZ_LAYOUTS['rmd17']}"
            )
        try:
            r, z, e, f = (_npz_member(path, archive, name) for name in names)
        except (OSError, ValueError, zipfile.BadZipFile, struct.error) as error:
            raise unreadable_npz(path, error) from None
    z = np.asarray(z).reshape(-1)
    shapes = [np.shape(values) for values in (r, e, f)]
    if len(shapes[0]) != 3 or shapes[0][2] != 3 or shapes[2] != shapes[0] or np.size(e) != shapes[0][0]:
        raise ValueError(f"{path}: positions, energies and forces must be (F, N, 3), (F,) and (F, N, 3), got {shapes}")
    if len(z) != shapes[0][1]:
        raise ValueError(f"{path}: {len(z)} atomic numbers for {shapes[0][1]} atoms per frame")
    if shapes[0][0] == 0 or shapes[0][1] == 0:
        raise ValueError(f"{path}: {shapes[0][0]} frames of {shapes[0][1]} atoms; labelled data need both")
    for name, values in (("positions", r), ("energies", e), ("forces", f)):
        if np.asarray(values[:0]).dtype.kind not in "iuf":
            raise ValueError(f"{path}: {name} hold {np.asarray(values[:0]).dtype} values; expected real numbers")
    if z.dtype.kind not in "iu" and not (z.dtype.kind == "f" and np.all(np.isfinite(z)) and np.all(z == np.round(z))):
        raise ValueError(f"{path}: atomic numbers must be integers, got {z[:8].tolist()}")
    mapped = isinstance(r, np.memmap)
    logger.info("%s: %d frames, %s", path, len(r), "memory-mapped" if mapped else "compressed, read into memory")
    return Frames(
        atomic_numbers=z.astype(np.int64),
        positions=_as_float64(r, 1.0),
        energies=np.asarray(e, dtype=np.float64).reshape(-1) * ev,
        forces=_as_float64(f, ev),
        source=str(path),
    )


def _is_ase_sqlite(path: Path) -> bool:
    """Whether ``path`` is an SQLite file holding ASE's ``systems`` table, read without writing to it."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as database:
            tables = database.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    except sqlite3.DatabaseError:
        return False
    return ("systems",) in tables


def read_ase_db(path: str | Path, energy_unit: str = "eV", selection: str | None = None) -> Frames:
    """Frames of one molecule from an ASE database (``.db``, SQLite or JSON) whose rows carry energy and forces
    (ASE stores eV and eV/Å; ``energy_unit`` names another unit if the file's writer used one). ``selection`` is an
    ASE query (e.g. ``"natoms=21"``)."""
    from ase.db import connect

    path = _existing(path)
    ev = _ev_per(energy_unit)
    if path.stat().st_size == 0:  # ase would make it a new, empty database
        raise ValueError(f"{path}: an empty file, not an ASE database")
    if path.suffix.lower() == ".db" and not _is_ase_sqlite(path):  # ase would add its tables to the file
        raise ValueError(f"{path}: not a readable ASE database (no 'systems' table)")
    numbers, positions, energies, forces = None, [], [], []
    try:  # no lock file beside the data: reading must leave its folder as it was
        rows = list(connect(str(path), use_lock_file=False).select(selection))
    except Exception as error:  # ase raises several types for a foreign or corrupt file
        raise ValueError(f"{path}: not a readable ASE database ({type(error).__name__}: {error})") from None
    for row in rows:
        if row.get("energy") is None or row.get("forces") is None:
            raise ValueError(f"{path}: row {row.id} has no energy or forces")
        if numbers is None:
            numbers = row.numbers.tolist()
        elif row.numbers.tolist() != numbers:
            raise ValueError(f"{path}: row {row.id}'s atoms differ from the first row's; one molecule per file")
        positions.append(row.positions)
        energies.append(row.energy)
        forces.append(row.forces)
    if numbers is None:
        raise ValueError(f"{path}: no rows" + (f" match {selection!r}" if selection else ""))
    return Frames(
        atomic_numbers=np.array(numbers, dtype=np.int64),
        positions=np.array(positions, dtype=np.float64),
        energies=np.array(energies, dtype=np.float64) * ev,
        forces=np.array(forces, dtype=np.float64) * ev,
        source=str(path),
    )


#: Energy units a data format fixes, by suffix: ASE databases store eV and eV/Å (the other formats' files come from
#: writers that use several units, so their reader is told the unit).
FORMAT_ENERGY_UNITS = {".db": "eV", ".json": "eV"}


def read_dataset(path: str | Path, energy_unit: str) -> Frames:
    """Read ``.xyz``/``.extxyz``, ``.npz`` or an ASE ``.db`` by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".xyz", ".extxyz"):
        return read_extxyz(path, energy_unit)
    if suffix == ".npz":
        return read_npz(path, energy_unit)
    if suffix in (".db", ".json"):
        return read_ase_db(path, energy_unit)
    raise ValueError(f"{path}: unknown data format {suffix!r} (expected .xyz, .extxyz, .npz or an ASE .db)")
