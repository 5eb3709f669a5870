"""openmm-ml's entry point for attnforce's potentials (``openmmml.potentials`` in pyproject.toml).

openmm-ml loads its entry points while it is itself being imported, so the module they name must not import
openmm-ml: ``import attnforce.openmm.mlpotential`` before ``openmmml`` would otherwise meet itself half-initialised.
This module holds the names and a factory that imports the implementation (:mod:`attnforce.openmm.mlpotential`)
only when openmm-ml asks for a potential.
"""

#: openmm-ml names -> the architecture each serves, which is also the embedded model used without ``modelPath``.
POTENTIALS = {"attnforce-sake": "sake", "attnforce-equiformer": "equiformer"}


class AttnforcePotentialImplFactory:
    """openmm-ml's ``MLPotentialImplFactory`` for the names in :data:`POTENTIALS`: ``MLPotential(name,
    modelPath=None)`` gets an :class:`attnforce.openmm.mlpotential.AttnforcePotentialImpl`."""

    def createImpl(self, name: str, modelPath: str | None = None, **args):
        from attnforce.openmm.mlpotential import AttnforcePotentialImpl

        if args:
            raise ValueError(f"MLPotential({name!r}) takes modelPath only, got {sorted(args)}")
        return AttnforcePotentialImpl(name, modelPath)
