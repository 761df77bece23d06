"""`python -m signaling [--host H] [--port P] ...`: the same server as `streamer serve`."""

from __future__ import annotations

import argparse
import logging
import sys

from signaling import config, serve
from streamer.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m signaling", description="P2P streaming signaling and bootstrap server."
    )
    config.add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose)
    try:
        return serve.run(config.config_from_args(args))
    except UserError as error:
        print(f"signaling: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
