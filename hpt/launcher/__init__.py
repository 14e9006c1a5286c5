"""Starting a tuning job: `hpt launch` (launch.py), a space's prepare step and `hpt rerun`."""
