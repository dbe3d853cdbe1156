"""pytest-vpro's own tests. The sample suite under plugin/sample is run by pytester, never collected here."""
collect_ignore_glob = ["plugin/sample/*"]
pytest_plugins = ["pytester"]
