"""A network test bed in Linux namespaces: real latency, loss, shaped uplinks, NATs and TURN.

topology.py describes the bed (pure), timing.py is the delay/loss model of the shim (pure),
shim.py applies it to forwarded packets (NFQUEUE), namespaces.py turns the description into
ip/tc/nft commands, coturn.py runs the STUN/TURN server, run.py runs the processes, report.py
prints the figures. `streamer netbed` is the command.
"""
