"""The ``replicator`` command line: parser, commands, rendering and the demo.

:mod:`replicator.cli.main` builds the parser and runs a command; each command
group has its own module and registers itself there; :mod:`replicator.cli.common`
holds the global flags and the error boundary; :mod:`replicator.cli.jobrun`
runs one job with progress and a summary; :mod:`replicator.cli.render` draws
progress bars, plain lines or JSON.  The core packages never import from here.
"""
