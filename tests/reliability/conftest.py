"""tests/reliability: hostile servers (hostile.py) on net 112, labs on net 113. Tests marked ``lab`` start a lab
and run in scripts/test's serial group; the rest run under xdist. (The marker is registered in pyproject.toml.)"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

