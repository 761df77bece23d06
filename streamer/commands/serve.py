"""`streamer serve`: the signaling/bootstrap server (introduces peers, serves pages, no video)."""

from __future__ import annotations

import argparse

from signaling import config, serve

NAME = "serve"
HELP = "run the signaling/bootstrap server: introduces peers, serves the pages, carries no video"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return serve.run(config.config_from_args(args))
