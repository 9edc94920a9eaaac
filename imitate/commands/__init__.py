"""Stage subcommands of ``imitate``: each module has HELP, add_arguments() and main()."""
