"""probes/smb.py finds smbprotocol's smbclient package even where a script named smbclient.py shadows it."""
from __future__ import annotations

import subprocess
import sys


def test_a_shadowing_smbclient_script_first_on_sys_path_does_not_hide_the_package(tmp_path):
    # impacket installs bin/smbclient.py; run as the `pytest` command, bin/ is sys.path[0].
    (tmp_path / "smbclient.py").write_text("# impacket's example script, not the package\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import smbclient; assert not hasattr(smbclient, 'register_session')  # the shadow is really there\n"
            "from pytest_vpro.probes.smb import smbprotocol_client\n"
            "m = smbprotocol_client(); assert hasattr(m, 'register_session'), m\n"
            "import smbclient._os  # its submodules resolve through the package\n"
            "assert smbprotocol_client() is m\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
