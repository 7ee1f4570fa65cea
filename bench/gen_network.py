"""Write synthetic (fictional) network data to files, for demos and benchmarks.

    python bench/gen_network.py network --seed 1 --out net.json
    python bench/gen_network.py cdr --seed 1 --rows 1000000 --out cdr.csv
    python bench/gen_network.py bank --seed 1 --rows 50000 --out bank.csv
    python bench/gen_network.py large --entities 1000000 --links 5000000 --out-dir big/

Rows are streamed to disk; memory stays flat however many are asked for.
A progress count goes to standard error.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskforce.graph import synthetic

T = TypeVar("T")


def _progress(rows: Iterable[T], total: int, label: str) -> Iterator[T]:
    step = max(1, total // 100)
    for n, row in enumerate(rows, 1):
        if n % step == 0 or n == total:
            print(f"\r{label}: {n:,}/{total:,} ({100 * n // max(1, total)}%)", end="",
                  file=sys.stderr, flush=True)
        yield row
    print(file=sys.stderr)


def _network(args: argparse.Namespace) -> synthetic.Network:
    return synthetic.generate(seed=args.seed, controllers=args.controllers, buyers=args.buyers)


def _write_csv(path: str, header: list[str], rows: Iterable[Iterable[Any]]) -> None:
    out = sys.stdout if path == "-" else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
    try:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    finally:
        if out is not sys.stdout:
            out.close()


def cmd_network(args: argparse.Namespace) -> None:
    network = _network(args)
    truth = synthetic.ground_truth(network)
    doc = {
        "seed": network.seed, "start": network.start.isoformat(), "end": network.end.isoformat(),
        "entities": [asdict(e) for e in network.entities.values()],
        "links": [asdict(lk) for lk in network.links],
        "ground_truth": asdict(truth),
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    print(f"{len(network.entities)} entities, {len(network.links)} links", file=sys.stderr)


def cmd_cdr(args: argparse.Namespace) -> None:
    rows = synthetic.iter_call_records(_network(args), args.rows, seed=args.seed + 1)
    _write_csv(args.out, list(synthetic.CallRecord._fields), _progress(rows, args.rows, "calls"))


def cmd_bank(args: argparse.Namespace) -> None:
    rows = synthetic.iter_bank_records(_network(args), args.rows, seed=args.seed + 2)
    _write_csv(args.out, list(synthetic.BankRecord._fields), _progress(rows, args.rows, "rows"))


def cmd_large(args: argparse.Namespace) -> None:
    graph = synthetic.generate_large(args.entities, args.links, args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(str(out / "entities.csv"), ["id", "kind", "props", "identifiers"], (
        (e.id, e.kind, json.dumps(e.props), json.dumps(e.identifiers))
        for e in _progress(graph.entities(), args.entities, "entities")
    ))
    _write_csv(str(out / "links.csv"), ["id", "source", "target", "type", "first_seen",
                                         "last_seen", "count", "amount"], (
        (lk.id, lk.source, lk.target, lk.type, lk.props["first_seen"], lk.props["last_seen"],
         lk.props["count"], "" if lk.props["amount"] is None else lk.props["amount"])
        for lk in _progress(graph.links(), args.links, "links")
    ))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("network", cmd_network), ("cdr", cmd_cdr), ("bank", cmd_bank)):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--controllers", type=int, default=3)
        p.add_argument("--buyers", type=int, default=60)
        p.add_argument("--out", default="-", help="file to write, - for standard output")
        if name != "network":
            p.add_argument("--rows", type=int, default=100_000)
    p = sub.add_parser("large")
    p.set_defaults(func=cmd_large)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--entities", type=int, default=1_000_000)
    p.add_argument("--links", type=int, default=5_000_000)
    p.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
