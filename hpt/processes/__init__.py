"""Nothing outlives hpt: the reaper of the processes and containers hpt starts, and its
sidecar for a launcher killed with SIGKILL."""
