"""The data contract: every tensor passed between loaders, models and trainers, by name.

=================  ==========  ======  ===============================================
key                shape       dtype   meaning
=================  ==========  ======  ===============================================
``POSITIONS``      (N, 3)      float   Cartesian positions, Å
``ATOMIC_NUMBERS`` (N,)        int64   atomic numbers Z
``BATCH``          (N,)        int64   index of the structure each atom belongs to
``EDGE_INDEX``     (2, E)      int64   (source, target): messages flow source -> target
``ENERGY``         (B,)        float   total potential energy per structure, eV
``FORCES``         (N, 3)      float   forces, eV/Å
``VELOCITIES``     (N, 3)      float   velocities, in the units of the task's data
``NUM_ATOMS``      (B,)        int64   atoms per structure
=================  ==========  ======  ===============================================

N counts atoms over the whole batch, B structures, E directed edges.
"""

POSITIONS = "positions"
ATOMIC_NUMBERS = "atomic_numbers"
BATCH = "batch"
EDGE_INDEX = "edge_index"
ENERGY = "energy"
FORCES = "forces"
VELOCITIES = "velocities"
NUM_ATOMS = "num_atoms"
