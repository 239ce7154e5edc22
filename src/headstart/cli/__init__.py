"""The command-line interface: a thin, typed layer over the library, one module per command."""
