"""attnforce: attention-based equivariant ML potentials (SAKE, Equiformer) as OpenMM forces.

MODEL is a saved model file or the name of an embedded model (default = sake, equiformer); STRUCTURE an .xyz or
.pdb file or the embedded molecule (default, aspirin).
"""

import argparse
import json
import logging
import sys
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _describe_metrics(metadata: dict) -> str:
    test = metadata.get("test_metrics")
    if not test:
        return "no test metrics stored"
    return (
        f"test energy MAE {test['energy_mae_mev']:.2f} meV, force MAE {test['force_mae_mev_per_a']:.2f} meV/Å "
        f"({metadata.get('test_frames', '?')} frames of {metadata.get('training_data', '?')})"
    )


def _train(args: argparse.Namespace) -> None:
    from training.config import load_config
    from training.trainer import train

    config = load_config(args.config)
    if args.output:
        config.output = args.output
    result = train(config)
    test = result.test_metrics
    print(
        f"best model: {result.best_model} after {result.epochs} epochs ({result.wall_seconds / 60:.1f} min); "
        f"test energy MAE {test['energy_mae_mev']:.2f} meV, force MAE {test['force_mae_mev_per_a']:.2f} meV/Å"
    )


def _export(args: argparse.Namespace) -> None:
    from attnforce.checkpoint import load_model
    from attnforce.export import export_torchscript
    from systems.molecules import load_molecule

    saved = load_model(args.model)
    numbers = load_molecule(args.structure).atomic_numbers if args.structure else None
    path = export_torchscript(saved, args.output, atomic_numbers=numbers, outputs_forces=args.output_forces)
    atoms = len(numbers) if numbers else len(saved.atomic_numbers)
    print(
        f"wrote {path}: TorchScript for openmm-torch, {atoms} atoms, positions nm -> energy kJ/mol"
        f"{' and forces kJ/mol/nm' if args.output_forces else ''}"
    )


def _md(args: argparse.Namespace) -> None:
    from attnforce.export import read_metadata
    from attnforce.openmm.force import load_force_model
    from integrators.md import run_md

    if args.time_ps is not None:
        steps = round(args.time_ps * 1000.0 / args.timestep_fs)
    else:
        steps = args.steps
    model = load_force_model(args.model)
    metadata = read_metadata(model) if isinstance(model, Path) else model.metadata
    result = run_md(
        model,
        args.structure,
        steps,
        args.dcd,
        energies_csv=args.csv,
        plot_png=False if args.no_plot else args.png,
        temperature_k=args.temperature,
        friction_per_ps=args.friction,
        timestep_fs=args.timestep_fs,
        report_interval=args.report_interval,
        ensemble=args.ensemble,
        minimize=not args.no_minimize,
        platform=args.platform,
        seed=args.seed,
        outputs_forces=True if args.output_forces else None,
    )
    print(f"model: {args.model}; {_describe_metrics(metadata)}")
    print(
        f"trajectory: {result.dcd} ({result.frames} frames, topology {result.topology_pdb}); "
        f"energies: {result.energies_csv}" + (f"; plot: {result.plot_png}" if result.plot_png else "")
    )
    print(
        f"{result.steps} steps of {args.timestep_fs} fs on {result.platform}: "
        f"{result.steps_per_second:.1f} steps/s, {result.ns_per_day:.3f} ns/day"
    )


def _info(args: argparse.Namespace) -> None:
    from attnforce.checkpoint import EMBEDDED_MODELS, load_model
    from attnforce.models import ARCHITECTURES, PRESETS, build_model, preset

    if args.model in PRESETS:
        architecture, hyperparameters = preset(args.model)
        count = sum(p.numel() for p in build_model(architecture, hyperparameters).parameters())
        print(
            json.dumps(
                {
                    "preset": args.model,
                    "architecture": architecture,
                    "parameters": count,
                    "hyperparameters": hyperparameters,
                },
                indent=2,
            )
        )
        return
    if args.model is None:
        print("architectures: " + ", ".join(sorted(ARCHITECTURES)))
        print("presets (attnforce info PRESET for one's parameter count): " + ", ".join(PRESETS))
        names_by_file: dict[str, list[str]] = {}
        for name, file in EMBEDDED_MODELS.items():
            names_by_file.setdefault(file, []).append(name)
        for file, names in names_by_file.items():
            saved = load_model(names[0])
            count = sum(p.numel() for p in saved.potential.parameters())
            print(
                f"embedded model {', '.join(map(repr, names))} ({file}): {saved.architecture}, {count} parameters; "
                f"{_describe_metrics(saved.metadata)}"
            )
        return
    saved = load_model(args.model)
    count = sum(p.numel() for p in saved.potential.parameters())
    print(
        json.dumps(
            {
                "architecture": saved.architecture,
                "parameters": count,
                "hyperparameters": saved.hyperparameters,
                "metadata": saved.metadata,
            },
            indent=2,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnforce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train an energy+force model from a YAML experiment config")
    train.add_argument("config", help="experiment YAML (unknown keys are errors)")
    train.add_argument("--output", help="run directory (overrides the config's output)")
    train.set_defaults(handler=_train)

    export = commands.add_parser("export", help="export a model as TorchScript for openmm-torch's TorchForce")
    export.add_argument("model", metavar="MODEL")
    export.add_argument("--output", required=True, help="the .pt file to write")
    export.add_argument("--structure", help="molecule to export for (default: the model's training molecule)")
    export.add_argument("--output-forces", action="store_true", help="module returns forces too (setOutputsForces)")
    export.set_defaults(handler=_export)

    md = commands.add_parser("md", help="molecular dynamics with a learned force, written to DCD")
    md.add_argument(
        "--model", default="default", metavar="MODEL", help="saved or exported model (default: %(default)s)"
    )
    md.add_argument(
        "--structure", default="default", metavar="STRUCTURE", help="starting structure (default: %(default)s)"
    )
    length = md.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive_int, default=1000, help="integration steps (default: %(default)s)")
    length.add_argument("--time-ps", type=float, help="simulated time in ps, instead of --steps")
    md.add_argument("--dcd", required=True, help="trajectory file; its topology is written beside it as .pdb")
    md.add_argument("--csv", help="energies CSV (default: beside the DCD)")
    md.add_argument("--png", help="energy and temperature plot (default: beside the DCD)")
    md.add_argument("--no-plot", action="store_true", help="write no plot")
    md.add_argument("--temperature", type=float, default=300.0, help="K (default: %(default)s)")
    md.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (default: %(default)s)")
    md.add_argument("--timestep-fs", type=float, default=0.5, help="fs (default: %(default)s)")
    md.add_argument(
        "--report-interval", type=_positive_int, default=100, help="steps between frames (default: %(default)s)"
    )
    md.add_argument("--ensemble", choices=["nvt", "nve"], default="nvt", help="Langevin (nvt) or Verlet (nve)")
    md.add_argument(
        "--platform", default="auto", help="OpenMM platform, or auto: CUDA, OpenCL, CPU (default: %(default)s)"
    )
    md.add_argument("--seed", type=int, help="seed of velocities and Langevin noise")
    md.add_argument("--no-minimize", action="store_true", help="skip energy minimisation")
    md.add_argument("--output-forces", action="store_true", help="the model returns forces itself (setOutputsForces)")
    md.set_defaults(handler=_md)

    info = commands.add_parser(
        "info", help="list architectures, presets and embedded models, or describe one model or preset"
    )
    info.add_argument("model", nargs="?", metavar="MODEL|PRESET")
    info.set_defaults(handler=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as error:
        logging.getLogger("attnforce").error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
