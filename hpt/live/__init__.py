"""What a running tuning job shows: the terminal view and the Ray dashboard's metrics."""
