"""Command line: list the benchmarks, or prepare one TF-free.

python -m tljax.data.benchmarks list
python -m tljax.data.benchmarks prepare office31/amazon --manual_dir ~/downloads/office31
"""

from __future__ import annotations

import argparse

from tljax.data.benchmarks.loader import get_benchmark, known_names, prepare_domain


def main(argv: list[str] | None = None) -> None:
    """Parses ``argv`` and runs the ``list`` or ``prepare`` command."""
    parser = argparse.ArgumentParser(prog="python -m tljax.data.benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the known benchmark names")
    prepare = commands.add_parser("prepare", help="download (or read manual_dir) and prepare")
    prepare.add_argument("name", help="a benchmark name, e.g. office31/amazon")
    prepare.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS's)")
    prepare.add_argument("--manual_dir", default=None, help="folder with downloaded files")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in known_names():
            spec = get_benchmark(name)
            print(f"{name:28s} tfds={spec.tfds_id:28s} classes={spec.num_classes}")
        return
    path = prepare_domain(args.name, data_dir=args.data_dir, manual_dir=args.manual_dir)
    print(f"Prepared {args.name} in {path}")


if __name__ == "__main__":
    main()
