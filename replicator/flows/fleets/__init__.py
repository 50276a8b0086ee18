"""What the fleet kind is made of: its machine, member sources, timing, options,
performer and metrics.  The kind itself is :mod:`replicator.flows.fleet`.
"""
