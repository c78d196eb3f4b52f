"""What is on disk: the run directory and journal, reading runs back, run slots."""
