"""The `policy` command line: parsing, formats and exit codes; no policy logic."""
