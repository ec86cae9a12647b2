"""One module per CLI command: `register(subcommands)` adds its parser and sets `run`.

A module only parses arguments and calls the library; the work lives in the package.
"""
