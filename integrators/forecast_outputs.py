"""What a forecast writes: initial-state files in, and NPZ, DCD (+ PDB topology) and PNG out.

Trajectories go to DCD through mdtraj with one chain per system and one atom per particle or joint (N-body: Na for
charge +1, Cl for -1; motion: C atoms named after the joints, bonded along the skeleton), so VMD and PyMOL show
them. DCD stores Å: one length unit of the task is written as one Å (the N-body units are dimensionless, and the
walker is then about 30 Å tall), converted to mdtraj's nanometres with ``openmm.unit``.
"""

import zipfile
from pathlib import Path

import numpy as np
import openmm.unit as unit

from attnforce.paths import require_file, unreadable_npz
from systems.forecasting import ForecastTask, charge_types

#: nm per task length unit in the DCD: one unit is drawn as one Å.
NM_PER_LENGTH_UNIT = (1.0 * unit.angstrom).value_in_unit(unit.nanometer)


def read_initial_states(
    path: str | Path, task: ForecastTask
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``positions`` (S, N, 3), ``velocities`` (S, N, 3), particle types (S, N) and charges (N-body) from an NPZ.

    N-body files need ``charges`` (S, N) of +1/-1; motion files have N = the skeleton's joints, in its order.
    """
    path = require_file(path, "initial-state")
    try:
        stored = np.load(path)
        if not isinstance(stored, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: a single .npy array, not an .npz archive of positions, velocities (and charges)")
        with stored:
            arrays = {key: stored[key] for key in stored.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise unreadable_npz(path, error) from None
    missing = [
        key for key in ("positions", "velocities") + (("charges",) if task.name == "nbody" else ()) if key not in arrays
    ]
    if missing:
        raise ValueError(f"{path}: lacks {missing} (it holds {sorted(arrays)})")
    for key in ("positions", "velocities", "charges"):
        if key in arrays and arrays[key].dtype.kind not in "iuf":
            raise ValueError(f"{path}: {key} hold {arrays[key].dtype} values; expected real numbers")
    positions, velocities = arrays["positions"].astype(np.float64), arrays["velocities"].astype(np.float64)
    if positions.ndim != 3 or positions.shape[-1] != 3 or velocities.shape != positions.shape:
        raise ValueError(
            f"{path}: positions and velocities must both be (S, N, 3), got {list(positions.shape)} and "
            f"{list(velocities.shape)}"
        )
    if positions.shape[0] == 0 or positions.shape[1] == 0:
        raise ValueError(
            f"{path}: holds {positions.shape[0]} systems of {positions.shape[1]} particles; nothing to forecast"
        )
    if task.name == "nbody":
        charges = arrays["charges"].astype(np.float64)
        if charges.shape != positions.shape[:2]:
            raise ValueError(f"{path}: charges must be (S, N) = {list(positions.shape[:2])}, got {list(charges.shape)}")
        return positions, velocities, charge_types(charges), charges
    if positions.shape[1] != task.num_types:
        raise ValueError(
            f"{path}: the {task.name} task has {task.num_types} joints per frame, the file {positions.shape[1]}"
        )
    types = np.broadcast_to(np.arange(task.num_types), positions.shape[:2]).copy()
    return positions, velocities, types, None


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write arrays to an NPZ at ``path`` (under any name: a run's temporary one, see
    :func:`attnforce.atomic.atomic_outputs`)."""
    with open(path, "wb") as handle:  # a handle: np.savez would append ".npz" to a name
        np.savez(handle, **arrays)


def trajectory_topology(task: ForecastTask, types: np.ndarray):
    """An mdtraj Topology with one chain per system (``types`` (S, N))."""
    import mdtraj

    topology = mdtraj.Topology()
    for system_types in types:
        chain = topology.add_chain()
        atoms = []
        for index, kind in enumerate(system_types):
            if task.name == "nbody":
                element = mdtraj.element.sodium if kind == 1 else mdtraj.element.chlorine
                name = "POS" if kind == 1 else "NEG"
            else:
                element, name = mdtraj.element.carbon, task.particle_names[kind][:4].upper()
            residue = topology.add_residue("PAR" if task.name == "nbody" else "JNT", chain, resSeq=index + 1)
            atoms.append(topology.add_atom(name, element, residue))
        for i, j in task.bonds:
            topology.add_bond(atoms[i], atoms[j])
    return topology


def write_dcd(dcd: str | Path, pdb: str | Path, positions: np.ndarray, task: ForecastTask, types: np.ndarray) -> None:
    """Write ``positions`` (S, F, N, 3) as a DCD of F frames with S*N atoms at ``dcd``, and its topology as a PDB at
    ``pdb`` (the DCD's name with ``.pdb``, or the run's temporary names of both)."""
    import mdtraj

    xyz = positions.transpose(1, 0, 2, 3).reshape(positions.shape[1], -1, 3) * NM_PER_LENGTH_UNIT
    trajectory = mdtraj.Trajectory(xyz.astype(np.float32), trajectory_topology(task, types))
    trajectory.save_dcd(str(dcd))
    trajectory[0].save_pdb(str(pdb))


def plot_forecast(
    path: str | Path,
    task: ForecastTask,
    forecast: np.ndarray,
    reference: np.ndarray | None = None,
    systems: int = 4,
) -> None:
    """A PNG at ``path`` (under any name, as :func:`write_npz`) of up to ``systems`` systems spread evenly over the
    set, x-y plane: N-body particle paths (reference solid at every frame, forecast dashed with a marker per
    horizon); motion: the skeleton at the start (grey), and at the last horizon the reference (black) and the
    forecast (red).

    Args:
        forecast: (S, K+1, N, 3) positions at each horizon.
        reference: optional (S, F, N, 3) reference positions at every data frame over the same span.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(systems, len(forecast))
    chosen = np.linspace(0, len(forecast) - 1, count).round().astype(int)
    fig, axes = plt.subplots(1, count, figsize=(4 * count, 4), squeeze=False)
    for s, ax in zip(chosen, axes[0], strict=True):
        if task.name == "nbody":
            for n in range(forecast.shape[2]):
                colour = f"C{n}"
                if reference is not None:
                    ax.plot(reference[s, :, n, 0], reference[s, :, n, 1], "-", color=colour, lw=1.5)
                ax.plot(forecast[s, :, n, 0], forecast[s, :, n, 1], "o--", color=colour, ms=4, lw=1)
                ax.plot(forecast[s, 0, n, 0], forecast[s, 0, n, 1], "k*", ms=8)
        else:
            for frame, style in (
                [(forecast[s, 0], dict(color="0.6", lw=1))]
                + ([(reference[s, -1], dict(color="k", lw=1.5))] if reference is not None else [])
                + [(forecast[s, -1], dict(color="C3", lw=1.5, ls="--"))]
            ):
                for i, j in task.bonds:
                    ax.plot(frame[[i, j], 0], frame[[i, j], 1], **style)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"system {s}")
        ax.set_xlabel(f"x ({task.length_unit})")
        ax.set_ylabel(f"y ({task.length_unit})")
    what = "reference solid, forecast dashed" if reference is not None else "forecast"
    fig.suptitle(f"{task.name}: {forecast.shape[1] - 1} horizon(s) of {task.horizon:.3g} {task.time_unit}; {what}")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110, format="png")
    finally:
        plt.close(fig)
