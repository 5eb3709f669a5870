"""The ``attnforce`` command line."""

import argparse
import logging
import sys


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnforce", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train an energy+force model from a YAML experiment config")
    train.add_argument("config", help="experiment YAML (unknown keys are errors)")
    train.add_argument("--output", help="run directory (overrides the config's output)")
    train.set_defaults(handler=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        logging.getLogger("attnforce").error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
