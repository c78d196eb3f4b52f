"""Builds dagfast's three compiled modules: the scheduler core `dagfast._sched`, the
spawn pool `dagfast._spawn` and the loader's YAML fast path `dagfast.loader._tree`
(which needs libyaml's header, Debian's libyaml-dev).

Switches (environment variables, read at build time):
  DAGFAST_DEBUG=1     compile with the debug counters, bounds checks and -O0 -g
  DAGFAST_ANNOTATE=1  write Cython's HTML annotation next to the .pyx
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("DAGFAST_DEBUG") == "1"

# Timestamps cannot see a switch of DAGFAST_DEBUG (same .pyx, other directives and flags):
# remember the last mode and re-cythonize when it changes, which also forces the compile.
mode = "debug" if debug else "release"
stamp = os.path.join("build", "dagfast-build-mode")
try:
    with open(stamp) as f:
        mode_changed = f.read() != mode
except FileNotFoundError:
    mode_changed = True
if mode_changed:
    os.makedirs("build", exist_ok=True)
    with open(stamp, "w") as f:
        f.write(mode)

# libyaml's header: without it the compiler's error would not say what to install.
if not any(os.path.exists(os.path.join(d, "yaml.h"))
           for d in ("/usr/include", "/usr/local/include", "/opt/homebrew/include")):
    raise SystemExit("dagfast needs libyaml's C header (yaml.h) to build its YAML fast path: "
                     "install libyaml-dev (Debian, Ubuntu), libyaml-devel (Fedora) or "
                     "libyaml (Homebrew)")

flags = ["-O2"] if not debug else ["-O0", "-g"]
# The C macro, not Cython's deprecated IF, switches the debug counters in _sched.pyx.
macros = [("DAGFAST_DEBUG", "1")] if debug else [("NDEBUG", "1")]
exts = [
    Extension("dagfast._sched", ["dagfast/_sched.pyx"], extra_compile_args=flags,
              define_macros=macros),
    # The fast path of the loader's YAML tree: libyaml's events read in C (libyaml-dev).
    Extension("dagfast.loader._tree", ["dagfast/loader/_tree.pyx"], extra_compile_args=flags,
              define_macros=macros, libraries=["yaml"]),
    # The spawn pool: C threads in dagfast/exec/spawnpool.h behind a thin Cython class,
    # and the guardian that ends a dead engine's steps (guardian.h).
    Extension("dagfast.exec._spawn", ["dagfast/exec/_spawn.pyx"], extra_compile_args=flags,
              define_macros=macros, include_dirs=["dagfast/exec"],
              depends=["dagfast/exec/spawnpool.h", "dagfast/exec/vmclone.h",
                       "dagfast/exec/guardian.h", "dagfast/exec/outstore.h"]),
]

setup(
    ext_modules=cythonize(
        exts,
        language_level=3,
        force=mode_changed,
        annotate=os.environ.get("DAGFAST_ANNOTATE") == "1",
        compiler_directives={
            "boundscheck": debug,
            "wraparound": False,
            "initializedcheck": debug,
            "cdivision": True,
        },
    ),
)
