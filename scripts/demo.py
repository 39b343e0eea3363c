"""`make demo`: pytcp's main job on an embedded default, in a throwaway network namespace.

Runs as root. Shows what the installed pytcp can do today.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

VENV_BIN = os.path.dirname(sys.executable)
PYTCP = os.path.join(VENV_BIN, "pytcp")


def main() -> int:
    version = subprocess.run([PYTCP, "--version"], capture_output=True, text=True).stdout
    print(f"$ pytcp --version\n{version}")
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or shutil.which("ip") is None:
        print("demo: the live part needs root, /dev/net/tun and iproute2; run `sudo make demo`.")
        return 0
    print("demo: the stack's subcommands have not landed yet; `pytcp --help` lists what works.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
