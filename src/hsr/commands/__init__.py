"""CLI subcommands; see hsr.cli."""
