"""Environment files. Installed as ``pytest_vpro.environments``: ``lab.yaml`` and ``example.yaml`` ship in the
package, so ``pytest --env lab`` works from any folder (see ``pytest_vpro.environment.resolve_env_path``)."""
