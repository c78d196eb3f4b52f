"""One run: the session (the one way in), the engine loop, the slow path, sub-DAGs.

Named `runtime`, not `run`: `dagfast.run` is the public function."""
