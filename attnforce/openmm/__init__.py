"""OpenMM side: ``module`` (the TorchScript module in openmm-torch's convention), ``force`` (the adapter that adds
it to a System after checking the topology) and ``platform`` (platform choice)."""
