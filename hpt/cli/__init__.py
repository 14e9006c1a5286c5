"""The `hpt` command: its argument table (parser.py), the commands (main.py, results.py) and
the console of long-running commands."""
