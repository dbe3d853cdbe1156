"""Repository-level glue only: nothing here is needed by the installed package.

The checks are in ``suites/``, which the package installs as ``pytest_vpro.suites``; the fixtures and hooks are
the plugin's (``pytest_vpro/plugin.py``, loaded through its ``pytest11`` entry point). What a clone adds to a
``pytest`` run is only this: folders that hold no tests of the project are never collected, even by
``pytest .`` or a path given by mistake: the run output, the lab's state, the tools and the virtual environment.
"""
collect_ignore = ["reports", ".lab", ".venv", "node_modules", "build", "bench/results"]
