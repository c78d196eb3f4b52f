"""Executors behind one base class: local processes (the spawn pool) and Dask."""
