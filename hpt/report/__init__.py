"""Reading a tuning job back: its table and summary, the Pareto front, plots, the HTML page
and the TensorBoard export."""
