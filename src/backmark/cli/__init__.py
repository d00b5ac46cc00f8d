"""The ``backmark`` command line: parses arguments and calls the library, nothing more."""
