"""pytest-vpro's own tests. The sample suite under plugin/sample is run by pytester, never collected here.

scripts/test runs tests/lab in one process (real servers on fixed loopback addresses) and the rest with xdist.
"""
collect_ignore_glob = ["plugin/sample/*"]
pytest_plugins = ["pytester"]
