"""pytcp's command-line interface (click). Imports `stack` by its public names only."""

__version__ = "0.1.0"
