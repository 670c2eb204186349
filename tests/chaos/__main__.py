"""``python -m tests.chaos``: one chaos run from the command line; prints the report table and
exits 1 when a target was missed (2 when the run itself failed)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.chaos.run import run
from tests.chaos.settings import SHAPES, shaped
from tests.chaos.table import table


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--mode", choices=("beat", "long_lived"), default="beat")
    parser.add_argument("--execution", choices=("chain", "fused"), default="chain",
                        help="how the pipeline runs its stages")  # fmt: skip
    parser.add_argument("--shape", choices=sorted(SHAPES), default="default")
    parser.add_argument("--records", type=int, help="records to produce (shape's default)")
    parser.add_argument("--rate", type=float, help="records per second")
    parser.add_argument("--batch-size", type=int, help="the pipeline's batch_size")
    parser.add_argument("--kills", type=int, help="whole-worker SIGKILLs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unacked-mutex-expire", type=float,
                        help="kombu's restore lock expiry in s (30; kombu's own: 300)")  # fmt: skip
    parser.add_argument("--storage", choices=("auto", "postgres", "s3", "memory"), default="auto",
                        help="the broker's storage (ignored with WORKERS_CHAOS_KAFKA)")  # fmt: skip
    parser.add_argument("--tick", type=float, help="seconds of records produced at once (0.5)")
    parser.add_argument("--drain-timeout", type=float, help="seconds to wait for the drain (300)")
    parser.add_argument("--report", type=Path, help="write the report as JSON here")
    parser.add_argument("--keep-logs", type=Path, help="copy worker, beat and server logs here")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: everything started is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, _interrupt)
    config = shaped(
        args.shape, mode=args.mode, execution=args.execution, records=args.records, rate=args.rate,
        batch_size=args.batch_size, kills=args.kills, seed=args.seed, storage=args.storage,
        report=args.report, keep_logs=args.keep_logs,
        unacked_mutex_expire=args.unacked_mutex_expire, tick=args.tick,
        drain_timeout=args.drain_timeout,
    )  # fmt: skip
    try:
        report = run(config)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the run failed, not a target: say so apart
        logging.exception("the chaos run failed; everything started was stopped")
        return 2
    print(f"mode={config.mode} shape={config.shape} seed={config.seed} "
          f"broker={report.services.get('broker')}")  # fmt: skip
    print(table(report))
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
