"""attnforce: attention-based equivariant ML potentials (SAKE, Equiformer) as OpenMM forces.

MODEL is a saved model file or the name of an embedded model (default = sake, equiformer); STRUCTURE an .xyz or
.pdb file or the embedded molecule (default, aspirin). `forecast` runs learned integrators: its default MODEL is
the task's embedded one (nbody, walking).
"""

import argparse
import errno
import json
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

import attnforce

#: Steps between saved frames of ``attnforce md`` unless --report-interval says otherwise.
DEFAULT_REPORT_INTERVAL = 100


def _positive_int(text: str) -> int:
    return _integer(text, 1)


def _seed(text: str) -> int:
    return _integer(text, 0)


def _integer(text: str, smallest: int) -> int:
    """``text`` as a whole number of at least ``smallest``; argparse's error naming what is wanted otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number such as 1000 (not 1e3 or 1.5), got {text!r}"
        ) from None
    if value < smallest:
        wanted = "a positive whole number" if smallest == 1 else f"a whole number of {smallest} or more"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
    return value


def _file_name(text: str) -> str:
    """``text`` if it can name an output file or folder; argparse's error saying why not otherwise."""
    from attnforce.atomic import file_name_problem

    problem = file_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _describe_metrics(metadata: dict) -> str:
    test = metadata.get("test_metrics")
    numbers = ("energy_mae_mev", "force_mae_mev_per_a")
    if not isinstance(test, dict) or not all(isinstance(test.get(key), (int, float)) for key in numbers):
        return "no test metrics stored"
    return (
        f"test energy MAE {test['energy_mae_mev']:.2f} meV, force MAE {test['force_mae_mev_per_a']:.2f} meV/Å "
        f"({metadata.get('test_frames', '?')} frames of {metadata.get('training_data', '?')})"
    )


def _train(args: argparse.Namespace) -> None:
    from attnforce.atomic import check_outputs
    from training.config import ForecastExperimentConfig, load_config
    from training.forecast_trainer import train_forecaster
    from training.trainer import train

    config = load_config(args.config)
    if args.output:
        config.output = args.output
    if not args.resume:
        check_outputs({"the run's config.yaml": Path(config.output) / "config.yaml"}, {"CONFIG": args.config})
    if args.nproc_per_node > 1:
        _train_in_processes(args, config.training.batch_size)
        return
    if isinstance(config, ForecastExperimentConfig):
        result = train_forecaster(config, resume=args.resume)
        test = result.test_metrics
        tested = (
            f"test position MSE {test['position_mse']:.5g} (constant velocity: "
            f"{test['constant_velocity_position_mse']:.5g}) over {test['samples']} samples"
        )
    else:
        result = train(config, resume=args.resume)
        test = result.test_metrics
        tested = f"test energy MAE {test['energy_mae_mev']:.2f} meV, force MAE {test['force_mae_mev_per_a']:.2f} meV/Å"
    if os.environ.get("RANK", "0") == "0":  # under torchrun, every process has the result: rank 0 reports it
        minutes = result.wall_seconds / 60
        print(f"best model: {result.best_model} after {result.epochs} epochs ({minutes:.1f} min); {tested}")


def _train_in_processes(args: argparse.Namespace, batch_size: int) -> None:
    """``train`` as ``args.nproc_per_node`` data-parallel processes (:func:`training.distributed.launch`), after
    this process has checked the config, the outputs and that the batch splits evenly."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from training.distributed import check_shares, launch

    check_shares(batch_size, args.nproc_per_node)

    arguments = [*(["--verbose"] if args.verbose else []), *(["--debug"] if args.debug else []), "train", args.config]
    arguments += [*(["--output", args.output] if args.output else []), *(["--resume"] if args.resume else [])]
    try:
        launch(args.nproc_per_node, arguments)
    except SignalException as stop:  # the elastic agent's handler: the processes are stopped and cleaned up
        raise Terminated(stop.sigval) from None


def _export(args: argparse.Namespace) -> None:
    from attnforce.atomic import check_outputs, check_suffix
    from attnforce.checkpoint import load_model
    from attnforce.export import export_torchscript
    from systems.molecules import load_molecule

    check_suffix("--output", args.output, ".pt")
    check_outputs({"--output": args.output}, {"MODEL": args.model, "--structure": args.structure})
    saved = load_model(args.model)
    molecule = load_molecule(args.structure) if args.structure else None
    numbers = molecule.atomic_numbers if molecule else None
    periodic = molecule is not None and molecule.topology.getPeriodicBoxVectors() is not None
    path = export_torchscript(
        saved,
        args.output,
        atomic_numbers=numbers,
        outputs_forces=args.output_forces,
        periodic=periodic,
        fixed_graph=args.cuda_graphs,
    )
    atoms = len(numbers) if numbers else len(saved.atomic_numbers)
    print(
        f"wrote {path}: TorchScript for openmm-torch, {atoms} atoms, positions nm"
        f"{' and box vectors nm (periodic)' if periodic else ''} -> energy kJ/mol"
        f"{' and forces kJ/mol/nm' if args.output_forces else ''}"
    )


def _md_steps(args: argparse.Namespace) -> int:
    """``--steps``, or ``--time-ps`` in steps of ``--timestep-fs``; ValueError for a time that gives none."""
    if args.time_ps is None:
        return args.steps
    if not (math.isfinite(args.time_ps) and args.time_ps > 0):
        raise ValueError(f"--time-ps must be a positive number of picoseconds, got {args.time_ps}")
    if not (math.isfinite(args.timestep_fs) and args.timestep_fs > 0):
        raise ValueError(f"--timestep-fs must be a positive number of femtoseconds, got {args.timestep_fs}")
    steps = round(args.time_ps * 1000.0 / args.timestep_fs)
    if steps < 1:
        raise ValueError(f"--time-ps {args.time_ps} is less than one step of {args.timestep_fs} fs")
    return steps


def _md(args: argparse.Namespace) -> None:
    from integrators.md import run_md

    steps = _md_steps(args)
    result = run_md(  # checks every number and output before it loads the model
        args.model,
        args.structure,
        steps,
        args.dcd,
        energies_csv=args.csv,
        plot_png=False if args.no_plot else args.png,
        temperature_k=args.temperature,
        friction_per_ps=args.friction,
        timestep_fs=args.timestep_fs,
        report_interval=args.report_interval or min(DEFAULT_REPORT_INTERVAL, steps),
        ensemble=args.ensemble,
        minimize=not args.no_minimize,
        platform=args.platform,
        seed=args.seed,
        outputs_forces=True if args.output_forces else None,
        cuda_graphs=args.cuda_graphs,
        trust_torchscript=args.trust_torchscript,
    )
    print(f"model: {args.model}; {_describe_metrics(result.model_metadata)}")
    print(
        f"trajectory: {result.dcd} ({result.frames} frames, topology {result.topology_pdb}); "
        f"energies: {result.energies_csv}" + (f"; plot: {result.plot_png}" if result.plot_png else "")
    )
    print(
        f"{result.steps} steps of {args.timestep_fs} fs on {result.platform}: "
        f"{result.steps_per_second:.1f} steps/s, {result.ns_per_day:.3f} ns/day"
    )


#: Systems ``forecast --dcd`` writes at most: each becomes a chain of one trajectory, and its PDB topology.
MAX_DCD_SYSTEMS = 5000


def _forecast(args: argparse.Namespace) -> None:
    import numpy as np

    from attnforce.atomic import atomic_outputs, check_outputs, check_suffix
    from integrators.forecast import check_forecast_memory, ensemble, rollout
    from integrators.forecast_outputs import plot_forecast, read_initial_states, write_dcd, write_npz
    from integrators.saved import load_forecaster
    from systems.forecasting import NBODY_PARTICLES, NBODY_SPLITS, reference_paths

    for option, path, suffix in (
        ("--output", args.output, ".npz"),
        ("--dcd", args.dcd, ".dcd"),
        ("--png", args.png, ".png"),
    ):
        if path:
            check_suffix(option, path, suffix)
    for option, value in (("--noise", args.noise), ("--velocity-noise", args.velocity_noise)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{option} is a standard deviation: give a finite number of 0 or more, got {value}")
    outputs = {"--output": args.output, "--dcd": args.dcd, "--png": args.png}
    if args.dcd:
        outputs["the topology beside --dcd"] = Path(args.dcd).with_suffix(".pdb")
    check_outputs(
        {what: path for what, path in outputs.items() if path},
        {"--initial": args.initial, "--model": args.model},
    )
    saved = load_forecaster(args.model, args.task)
    task = saved.task
    if args.horizons > 1 and not saved.predicts_velocities:
        raise ValueError(
            f"{saved.path} was trained on positions only, so its velocities are not forecasts: roll-outs of "
            "several horizons need a model trained with a velocity loss (such as the embedded ones)"
        )
    reference = None
    members = args.ensemble or 0
    if args.initial:
        positions, velocities, types, charges = read_initial_states(args.initial, task)
        check_forecast_memory(len(positions), positions.shape[1], args.horizons, members)
    else:
        if task.name == "nbody":  # the test systems are simulated for the whole span: check before that
            check_forecast_memory(NBODY_SPLITS["test"][0], NBODY_PARTICLES, args.horizons, members, task.horizon_frames)
        paths = reference_paths(task.name, args.horizons, args.data_dir)
        positions, velocities, types, charges = paths.positions, paths.velocities, paths.types, paths.charges
        reference = paths.paths
        check_forecast_memory(len(positions), positions.shape[1], args.horizons, members, task.horizon_frames)
    if args.dcd and len(positions) > MAX_DCD_SYSTEMS:
        raise ValueError(
            f"--dcd writes every system as a chain of one trajectory: {len(positions)} systems are more than a viewer "
            f"(or a PDB topology) can hold; give at most {MAX_DCD_SYSTEMS} systems in --initial, or no --dcd (the NPZ "
            "holds them all)"
        )
    forecast, forecast_velocities = rollout(saved.model, positions, velocities, types, args.horizons, progress=True)
    arrays = {
        "positions": forecast,
        "velocities": forecast_velocities,
        "types": types,
        "time": np.arange(args.horizons + 1) * task.horizon,
    }
    if charges is not None:
        arrays["charges"] = charges
    summary = [f"{len(forecast)} systems, {args.horizons} horizon(s) of {task.horizon:.4g} {task.time_unit}"]
    if reference is not None:
        truth = reference[:, :: task.horizon_frames]
        arrays["reference_positions"] = truth
        arrays["position_mse"] = ((forecast - truth) ** 2).mean(axis=(0, 2, 3))
        summary.append(
            "position MSE per horizon vs the reference: " + ", ".join(f"{m:.4g}" for m in arrays["position_mse"][1:])
        )
    if args.ensemble:
        members, spread = ensemble(
            saved.model,
            positions,
            velocities,
            types,
            args.horizons,
            args.ensemble,
            args.noise,
            args.velocity_noise,
            args.seed,
            progress=True,
        )
        arrays["ensemble_positions"], arrays["spread"] = members, spread
        summary.append(
            f"ensemble of {args.ensemble} (noise {args.noise:g} {task.length_unit}): mean spread per horizon "
            + ", ".join(f"{m:.4g}" for m in spread.mean(axis=0))
        )
    written = [Path(path) for path in outputs.values() if path]
    with atomic_outputs(written) as partial:
        write_npz(partial[Path(args.output)], **arrays)
        if args.dcd:
            write_dcd(partial[Path(args.dcd)], partial[Path(args.dcd).with_suffix(".pdb")], forecast, task, types)
        if args.png:
            plot_forecast(partial[Path(args.png)], task, forecast, reference)
    print(f"model: {saved.path} ({saved.architecture}, {task.name}); " + "; ".join(summary))
    print("wrote " + ", ".join(map(str, written)))


def _evaluate(args: argparse.Namespace) -> None:
    from attnforce.atomic import atomic_output, check_outputs, check_suffix
    from attnforce.checkpoint import DTYPES, load_model
    from attnforce.elements import formula
    from systems import random_split, read_dataset
    from systems.readers import FORMAT_ENERGY_UNITS
    from training.evaluation import (
        bootstrap_metrics,
        check_energy_unit,
        check_predictions,
        predict,
        warn_energy_scale_or_offset,
    )
    from training.statistics import check_data

    if args.json:
        check_suffix("--json", args.json, ".json")
        check_outputs({"--json": args.json}, {"MODEL": args.model, "DATA": args.data})
    saved = load_model(args.model, DTYPES[args.dtype])
    energy_unit = args.energy_unit
    if energy_unit is None:  # the format's unit, else the training data's
        energy_unit = FORMAT_ENERGY_UNITS.get(Path(args.data).suffix.lower(), saved.metadata.get("energy_unit_of_data"))
    if energy_unit is None:
        raise ValueError(f"{saved.path} does not record its data's energy unit: give --energy-unit")
    frames = read_dataset(args.data, energy_unit)
    if not set(frames.atomic_numbers.tolist()) <= set(saved.elements):
        raise ValueError(f"{args.data} has elements the model was not trained on (it knows {saved.elements})")
    check_data(frames, energy_unit)
    same_molecule = sorted(frames.atomic_numbers.tolist()) == sorted(saved.atomic_numbers)
    if not same_molecule:
        logging.getLogger("attnforce").warning(
            "%s holds %s, and %s was trained on %s: the errors measure transfer to a molecule it never saw",
            args.data,
            formula(frames.atomic_numbers.tolist()),
            saved.path,
            formula(saved.atomic_numbers),
        )
    if args.split == "test":
        split = saved.metadata.get("split")
        if split is None:
            raise ValueError(f"{saved.path} stores no split: evaluate --split all")
        trained_on = saved.metadata.get("training_data")
        if trained_on is not None and Path(trained_on).name != Path(args.data).name:
            logging.getLogger("attnforce").warning(
                "--split test: %s was trained on %s, not %s; the split is drawn over this file's frames",
                saved.path,
                trained_on,
                args.data,
            )
        frames = frames.subset(random_split(len(frames), split["sizes"], split["seed"])[2])
    energies, forces = predict(saved.potential, frames)
    check_predictions(energies, forces, saved.path, args.data)
    check_energy_unit(forces, frames, energy_unit)
    if same_molecule:
        warn_energy_scale_or_offset(energies, frames)
    result = bootstrap_metrics(energies, forces, frames, args.bootstrap, args.seed)
    print(f"{saved.path} on {args.data} ({args.split}: {len(frames)} frames; {args.bootstrap} bootstrap resamples)")
    print("| metric | value | 95% interval |")
    print("|---|---:|---|")
    for name, value in result.items():
        interval = "-" if value["low"] is None else f"{value['low']:.3f} - {value['high']:.3f}"
        print(f"| {name} | {value['value']:.3f} | {interval} |")
    if args.json:
        report = {"model": saved.path, "data": str(args.data), "split": args.split, "frames": len(frames), **result}
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2))


def _info(args: argparse.Namespace) -> None:
    from attnforce.checkpoint import EMBEDDED_MODELS, load_model
    from attnforce.models import ARCHITECTURES, PRESETS, build_model, preset
    from attnforce.paths import refuse_shadowed
    from integrators.saved import EMBEDDED_FORECASTERS, is_forecaster, load_forecaster

    if args.model in PRESETS:
        refuse_shadowed(args.model, "preset")
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
        for task, file in EMBEDDED_FORECASTERS.items():
            forecaster = load_forecaster(task)
            count = sum(p.numel() for p in forecaster.model.parameters())
            test = forecaster.metadata["test_metrics"]
            print(
                f"embedded learned integrator for `forecast --task {task}` ({file}): {forecaster.architecture}, "
                f"{count} parameters; {forecaster.task.horizon:.4g} {forecaster.task.time_unit} per step; test "
                f"position MSE {test['position_mse']:.4g} "
                f"(constant velocity {test['constant_velocity_position_mse']:.4g})"
            )
        return
    if is_forecaster(args.model):
        saved = load_forecaster(args.model)
        network = saved.model
    else:
        if args.model not in EMBEDDED_MODELS and not os.path.lexists(args.model):
            raise ValueError(
                f"{args.model!r} is no file, embedded model or preset; embedded models: {sorted(EMBEDDED_MODELS)}, "
                f"learned integrators: {sorted(EMBEDDED_FORECASTERS)}, presets: {sorted(PRESETS)}"
            )
        saved = load_model(args.model)
        network = saved.potential
    count = sum(p.numel() for p in network.parameters())
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
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train an energy+force model or a learned integrator from a YAML experiment config"
    )
    train.add_argument("config", help="experiment YAML (unknown keys are errors)")
    train.add_argument("--output", type=_file_name, help="run directory (overrides the config's output)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in the output directory from its last.pt"
    )
    train.add_argument(
        "--nproc-per-node",
        type=_positive_int,
        default=1,
        metavar="P",
        help="data-parallel processes on this machine (DDP; as torchrun --standalone --nproc_per_node P)",
    )
    train.set_defaults(handler=_train)

    export = commands.add_parser("export", help="export a model as TorchScript for openmm-torch's TorchForce")
    export.add_argument("model", metavar="MODEL")
    export.add_argument("--output", type=_file_name, required=True, help="the .pt file to write")
    export.add_argument(
        "--structure",
        help="molecule or periodic box to export for (default: the model's training molecule); a PDB with a CRYST1 "
        "record gives a periodic module that takes the box vectors",
    )
    export.add_argument("--output-forces", action="store_true", help="module returns forces too (setOutputsForces)")
    export.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="fix the graph (all pairs) so that the module can run as a CUDA graph",
    )
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
    md.add_argument(
        "--dcd", type=_file_name, required=True, help="trajectory file; its topology is written beside it as .pdb"
    )
    md.add_argument("--csv", type=_file_name, help="energies CSV (default: beside the DCD)")
    plot = md.add_mutually_exclusive_group()
    plot.add_argument("--png", type=_file_name, help="energy and temperature plot (default: beside the DCD)")
    plot.add_argument("--no-plot", action="store_true", help="write no plot")
    md.add_argument(
        "--trust-torchscript",
        action="store_true",
        help="accept an exported TorchScript file as --model: it is a program and runs with your permissions",
    )
    md.add_argument("--temperature", type=float, default=300.0, help="K (default: %(default)s)")
    md.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps (default: %(default)s)")
    md.add_argument("--timestep-fs", type=float, default=0.5, help="fs (default: %(default)s)")
    md.add_argument(
        "--report-interval",
        type=_positive_int,
        help=f"steps between frames (default: {DEFAULT_REPORT_INTERVAL}, or every step of a shorter run)",
    )
    md.add_argument("--ensemble", choices=["nvt", "nve"], default="nvt", help="Langevin (nvt) or Verlet (nve)")
    md.add_argument(
        "--platform", default="auto", help="OpenMM platform, or auto: CUDA, OpenCL, CPU (default: %(default)s)"
    )
    md.add_argument("--seed", type=int, help="seed of velocities and Langevin noise")
    md.add_argument("--no-minimize", action="store_true", help="skip energy minimisation")
    md.add_argument("--output-forces", action="store_true", help="the model returns forces itself (setOutputsForces)")
    md.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on the CUDA platform, replay each step as a CUDA graph (useCUDAGraphs; molecules up to 256 atoms)",
    )
    md.set_defaults(handler=_md)

    evaluate = commands.add_parser(
        "evaluate", help="energy and force errors of a saved model on labelled data, with bootstrap 95%% intervals"
    )
    evaluate.add_argument("model", metavar="MODEL", help="saved model (or an embedded one's name)")
    evaluate.add_argument("data", metavar="DATA", help="extended XYZ or MD17/rMD17 .npz file")
    evaluate.add_argument(
        "--energy-unit",
        help="energy unit of DATA (default: eV for an ASE .db, else the unit of the model's training data)",
    )
    evaluate.add_argument(
        "--split",
        choices=["all", "test"],
        default="all",
        help="all frames, or the test frames of the split stored with the model (default: %(default)s)",
    )
    evaluate.add_argument("--bootstrap", type=_positive_int, default=1000, help="resamples (default: %(default)s)")
    evaluate.add_argument("--seed", type=_seed, default=0, help="seed of the resampling")
    evaluate.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    evaluate.add_argument("--json", type=_file_name, help="also write the results as JSON")
    evaluate.set_defaults(handler=_evaluate)

    forecast = commands.add_parser(
        "forecast", help="forecast trajectories with a learned integrator (SAKE's velocity update)"
    )
    forecast.add_argument("--task", required=True, choices=["nbody", "walking", "running"])
    forecast.add_argument(
        "--model",
        default="default",
        metavar="MODEL",
        help="saved learned integrator or default (the task's embedded one)",
    )
    forecast.add_argument(
        "--initial",
        help="NPZ of initial states: positions, velocities (S,N,3) [+ charges (S,N)]; default: the test set",
    )
    forecast.add_argument("--data-dir", help="folder holding cmu_mocap/ and eghn_motion/ (motion test sets)")
    forecast.add_argument("--horizons", type=_positive_int, default=1, help="horizons to roll out (default: 1)")
    forecast.add_argument(
        "--output", type=_file_name, required=True, help="NPZ to write: positions (S,K+1,N,3), index 0 = input"
    )
    forecast.add_argument(
        "--dcd", type=_file_name, help="also write the forecast trajectories as DCD (+ PDB topology beside it)"
    )
    forecast.add_argument("--png", type=_file_name, help="also plot reference vs forecast paths")
    forecast.add_argument(
        "--ensemble", type=_positive_int, help="also roll out this many perturbed copies of each state"
    )
    forecast.add_argument(
        "--noise", type=float, default=0.01, help="ensemble position noise, length units (default: %(default)s)"
    )
    forecast.add_argument("--velocity-noise", type=float, default=0.0, help="ensemble velocity noise (default: 0)")
    forecast.add_argument("--seed", type=_seed, default=0, help="seed of the ensemble noise")
    forecast.set_defaults(handler=_forecast)

    info = commands.add_parser(
        "info", help="list architectures, presets and embedded models, or describe one model or preset"
    )
    info.add_argument("model", nargs="?", metavar="MODEL|PRESET")
    info.set_defaults(handler=_info)
    return parser


#: command -> what to ask for instead when it runs out of memory
MEMORY_FIXES = {
    "train": "a smaller batch_size or model, and a config without values far larger than meant",
    "evaluate": "fewer --bootstrap samples, or fewer frames in the data file",
    "forecast": "fewer systems in --initial, fewer --horizons or --ensemble members, or an --initial without extra "
    "arrays",
    "md": "a smaller structure",
    "export": "a smaller model",
}


def describe_error(error: BaseException, command: str | None = None) -> str:
    """One line naming what went wrong and, where it is known, the fix (``command``: the subcommand that ran)."""
    text = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
    if isinstance(error, (PermissionError, IsADirectoryError, NotADirectoryError)) and error.filename:
        fix = {
            PermissionError: "check its permissions or choose another path",
            IsADirectoryError: "give a file name, not a directory",
            NotADirectoryError: "a folder on the path is a file",
        }[type(error)]
        return f"{error.filename}: {error.strerror}; {fix}"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "no space left on the device an output goes to: free space or write elsewhere"
    if isinstance(error, OSError) and error.errno == errno.EFBIG:
        from attnforce.atomic import file_size_limit

        limit = file_size_limit()
        return (
            f"{error.filename or 'an output'} reached "
            + (
                f"this shell's file-size limit of {limit} bytes (ulimit -f)"
                if limit
                else "its file system's file size limit"
            )
            + ": raise the limit or write less (for md, a larger --report-interval)"
        )
    if isinstance(error, OSError) and error.errno == errno.EIO and error.filename:
        return f"{error.filename}: input/output error while writing it; check the disk it is on"
    if isinstance(error, MemoryError):
        detail = f": {text}" if str(error) else ""
        return f"out of memory{detail}; ask for {MEMORY_FIXES.get(command, 'less')}"
    if isinstance(error, (ValueError, FileNotFoundError, FloatingPointError, OSError)):
        return text
    if type(error).__name__ == "OpenMMException":
        return f"OpenMM: {text}"
    if isinstance(error, RuntimeError):  # torch's errors carry C++ frames on the following lines
        return text + (" (--debug shows the details)" if "\n" in str(error).strip() else "")
    return f"unexpected {type(error).__name__}: {text}; rerun with --debug for the traceback and report it"


#: Signals that end a run like Ctrl-C does: ``kill PID`` and a closed terminal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A stop signal (:data:`STOP_SIGNALS`), raised where the process is, so that every output's temporary file is
    removed; ``signum`` is the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame) -> None:
    raise Terminated(signum)


#: Seconds a stop signal (Ctrl-C or :data:`STOP_SIGNALS`) is given to end the command the usual way, by an exception
#: that removes its temporary outputs as it unwinds, before :class:`_StopWatch` ends the process.
STOP_GRACE_S = 3.0


def _stop_exit_status(signum: int) -> int:
    """The shell's status of a command ended by signal ``signum``: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + signum


def _stopped(signum: int) -> str:
    """The last line of a command ended by the stop signal ``signum``."""
    cause = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    return f"{cause}; outputs not finished were removed"


def _stop_behind(error: BaseException) -> int | None:
    """The stop signal whose exception ``error`` wraps (its cause or context, at any depth), None if none does."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, Terminated):
            return error.signum
        if isinstance(error, KeyboardInterrupt):
            return signal.SIGINT
        error = error.__cause__ or error.__context__
    return None


class _StopWatch:
    """Ends the process when a stop signal goes unanswered: Python runs a signal's handler only between bytecodes,
    so while C++ runs (OpenMM's minimiser, which returns only when done, or openmm-torch's first evaluations, which
    compile the model) the handler waits, for minutes on a large or busy machine. Python's C handler also writes each
    signal's number to a pipe (``signal.set_wakeup_fd``); this thread reads it, and if the command has not ended
    :data:`STOP_GRACE_S` seconds later it removes the temporary outputs (:func:`attnforce.atomic.abandon_outputs`)
    and ends the process with the signal's exit status. OpenMM releases the GIL while it works, so the thread runs.

    ``received`` is the first stop signal's number, None while there was none."""

    def __init__(self, log: logging.Logger):
        self._log, self.received = log, None
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # the C handler must never block
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="attnforce-stop-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        from attnforce.atomic import abandon_outputs

        stops = {signal.SIGINT, *STOP_SIGNALS}
        while self.received is None and (data := os.read(self._read, 64)):
            self.received = next((signum for signum in data if signum in stops), None)
        if self.received is None or self._finished.wait(STOP_GRACE_S):
            return
        abandon_outputs()
        self._log.error("%s", _stopped(self.received))
        logging.shutdown()
        os._exit(_stop_exit_status(self.received))

    def close(self) -> None:
        """Stop watching: the command has ended (a signal that arrives now is Python's again)."""
        self._finished.set()
        signal.set_wakeup_fd(self._previous)
        os.close(self._write)  # the thread's read returns
        self._thread.join()
        os.close(self._read)


class StandardOutputFailed(OSError):
    """Writing standard output failed (a full device behind ``>``, say), as opposed to writing an output file."""


class _ReportingFailures:
    """Standard output whose write errors are :class:`StandardOutputFailed`, so that the message can say which
    stream failed; a reader that stopped reading (BrokenPipeError, ``| head``) stays what it is."""

    def __init__(self, stream):
        self._stream = stream

    def _guarded(self, method, *arguments):
        try:
            return method(*arguments)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise StandardOutputFailed(error.errno, error.strerror) from None

    def write(self, text: str) -> int:
        return self._guarded(self._stream.write, text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _discard_standard_output() -> None:
    """Point standard output's descriptor at /dev/null, so that the buffered text Python flushes at exit goes
    nowhere instead of failing again on a stream that already failed."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def _reopen_closed_streams() -> None:
    """Point closed standard descriptors (a shell's ``2>&-``) at /dev/null: a file opened later would otherwise
    take descriptor 2 and receive a library's warnings. A closed standard error then loses the log, not the run."""
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (the process's standard error, never closed)


def main(argv: list[str] | None = None) -> int:
    stdout_closed = sys.stdout is None
    _reopen_closed_streams()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("attnforce")
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show "Å" gets "?" rather than a failed run
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    if stdout_closed:  # started with standard output closed (``>&-``): the results would be lost
        log.error("standard output is closed; the results would be lost (redirect it to a file instead)")
        return 2
    stdout, sys.stdout = sys.stdout, _ReportingFailures(sys.stdout)
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    previous = {signum: signal.signal(signum, _terminate) for signum in STOP_SIGNALS} if in_main_thread else {}
    loading = getattr(attnforce, "_interrupted", None)  # the command line's Ctrl-C handler while it loads
    if in_main_thread and loading is not None and signal.getsignal(signal.SIGINT) is loading:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is ours now
    watch = _StopWatch(log) if in_main_thread else None
    try:
        args.handler(args)
        sys.stdout.flush()
    except StandardOutputFailed as error:
        _discard_standard_output()  # else Python's exit writes to it again
        log.error(
            "standard output could not be written (%s): what the command printed is lost, the files it had "
            "finished are complete; send standard output elsewhere",
            error.strerror or error,
        )
        return 2
    except (KeyboardInterrupt, Terminated) as stop:
        signum = stop.signum if isinstance(stop, Terminated) else signal.SIGINT
        log.error("%s", _stopped(signum))
        return _stop_exit_status(signum)
    except BrokenPipeError:  # the reader stopped reading (``| head``): what it wanted was written
        _discard_standard_output()
        return 0
    except Exception as error:
        if args.debug:
            raise
        stop = _stop_behind(error) or (watch.received if watch is not None else None)
        if stop is not None:  # the signal's exception, wrapped by a library
            log.error("%s", _stopped(stop))
            return _stop_exit_status(stop)
        log.error("%s", describe_error(error, args.command))
        return 2
    finally:
        if watch is not None:
            watch.close()
        sys.stdout = stdout
        for signum, handler in previous.items():  # Ctrl-C during the exit that follows changes nothing
            signal.signal(signum, signal.SIG_IGN if loading is not None and handler is loading else handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
