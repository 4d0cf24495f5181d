"""The ``anyware`` command line: ``main.py`` wires one module per subcommand."""
