"""The command line: only this package imports typer and rich; each command parses, calls one core function, renders."""
