"""Memory of reading a million-frame MD17 ``.npz``: the memory-mapped reader against loading every array.

A synthetic file in the public MD17 layout (``R, z, E, F``, kcal/mol, stored uncompressed as ``np.savez`` writes
it) with ``--frames`` aspirin-sized frames (21 atoms; rMD17 aspirin frames repeated with 0.01 Å noise) is written
once; each case then runs in its own process and reports the peak of NumPy's allocations (``tracemalloc``) and its
anonymous resident memory (``RssAnon``, memory the process owns; mapped file pages are the kernel's cache):

- ``load all``: ``np.load`` of every array, converted to eV (what a reader without memory mapping holds);
- ``read_npz``: :func:`systems.readers.read_npz` (mapped; checked for NaN chunk by chunk);
- ``read_npz + SAKE split train/val``: the 1000 + 1000 frames a SAKE run trains and validates on, read into memory;
- ``read_npz + whole SAKE split``: also the test set (the rest: every other frame), as ``attnforce train`` does.

Run from the repository root::

    python -m bench.npz_memory --frames 1000000 --json bench/results/npz_memory.json
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.output import write_json

CASES = ["load all", "read_npz", "read_npz + SAKE split train/val", "read_npz + whole SAKE split"]
ASPIRIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "md17" / "rmd17_aspirin_1000.xyz"


def write_file(path: Path, frames: int) -> None:
    """The synthetic MD17-layout file (built array by array, so the writer holds at most two arrays)."""
    import numpy as np

    from systems import read_extxyz

    source = read_extxyz(ASPIRIN, "meV")
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(source), frames)
    positions = source.positions[pick] + 0.01 * rng.standard_normal((frames, len(source.atomic_numbers), 3))
    forces = source.forces[pick] * 23.06  # eV/Å -> about kcal/mol/Å, values only
    energies = (source.energies[pick] * 23.06)[:, None]
    np.savez(path, R=positions, z=source.atomic_numbers.astype(np.uint8), E=energies, F=forces)


def measure(case: str, path: str) -> dict:
    """Run one case in this process; its peak traced allocation and anonymous resident memory in MB."""
    import tracemalloc

    import numpy as np

    from systems import random_split
    from systems.readers import read_npz
    from systems.splits import NAMED_SPLITS

    tracemalloc.start()
    if case == "load all":
        with np.load(path) as data:
            held = {name: np.asarray(data[name], dtype=np.float64) for name in ("R", "E", "F")}
        held["E"] *= 0.0434
        held["F"] *= 0.0434
    else:
        frames = read_npz(path, "kcal/mol")
        held = [frames]
        if case != "read_npz":
            splits = random_split(len(frames), NAMED_SPLITS["sake"], 0)
            held += [frames.subset(i) for i in (splits[:2] if "train/val" in case else splits)]
    peak = tracemalloc.get_traced_memory()[1]
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"case": case, "traced_peak_mb": peak / 1e6, "rss_anon_mb": int(status["RssAnon"].split()[0]) / 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "md17_synthetic.npz"
        write_file(path, args.frames)
        size_mb = path.stat().st_size / 1e6
        rows = []
        for case in CASES:
            output = subprocess.run(
                [sys.executable, "-m", "bench.npz_memory", "--measure", case, str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.append(json.loads(output.splitlines()[-1]))
    print(f"file: {args.frames} frames of 21 atoms, {size_mb:.0f} MB")
    print("| case | traced peak (MB) | RssAnon (MB) |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['case']} | {row['traced_peak_mb']:.0f} | {row['rss_anon_mb']:.0f} |")
    if args.json:
        write_json(args.json, {"frames": args.frames, "file_mb": size_mb, "cases": rows})


if __name__ == "__main__":
    main()
