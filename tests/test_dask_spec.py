"""The spec's examples (and a DAG timeout, and a stop with signalOnStop and a cancel
handler) on the Dask executor: the very tests that run them locally, run again here
through the environment, with the same outcomes on both executors. What only a cluster
has is in test_dask.py (a module of its own, so that the two run side by side)."""

from __future__ import annotations

from daskkit import cluster, on_dask  # noqa: F401 (fixtures)

import test_spec_examples
import test_spec_features

_SAME = [
    getattr(test_spec_examples, name) for name in dir(test_spec_examples)
    if name.startswith("test_") and name != "test_examples_match_the_spec_page"
] + [
    getattr(test_spec_features, name) for name in (
        # The spec page's examples run in test_spec_features.
        "test_environment_based_runs_at_most_max_parallel",
        "test_time_based_rewrites_max_active_steps_in_dag_yaml",
        "test_fan_out_pattern_captures_files_then_processes_in_parallel",
        "test_dynamic_fan_out_runs_the_generated_steps_in_parallel",
        "test_error_handling_continue_on_failure",
        "test_progress_monitoring_completes_with_its_placeholders_filled",
        "test_multiple_dag_runs_loads_and_a_run_without_steps_succeeds",
        "test_parallel_sub_dags_run_their_regions_at_once",
        "test_resource_awareness_step_env_reaches_the_step",
        # What only the slow path does: a DAG timeout, a stop with signalOnStop and a
        # cancel handler. (Step timeouts, retries, outputs and sub-DAGs: below.)
        "test_dag_timeout_fails_the_run",
        "test_cancel_handler_runs_when_the_run_is_stopped",
    )
]
for _test in _SAME:
    globals()[_test.__name__.replace("test_", "test_on_dask_", 1)] = _test
del _test
