"""The `nas` command line: one command, subcommands in cmd_<name>.py modules."""
