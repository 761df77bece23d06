"""One module per `streamer` subcommand.

Each module exposes `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`. `streamer.cli`
only wires them to argparse, so commands are added without touching each other.
"""

COMMAND_MODULES = [
    "streamer.commands.package",
    "streamer.commands.serve",
    "streamer.commands.broadcast",
    "streamer.commands.relay",
    "streamer.commands.watch",
    "streamer.commands.bench",
    "streamer.commands.simulate",
    "streamer.commands.netbed",
    "streamer.commands.loadgen",
]
