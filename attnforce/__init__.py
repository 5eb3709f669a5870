"""attnforce: attention-based equivariant machine-learned potentials for OpenMM.

Models work in Å and eV; the OpenMM adapter converts to nm and kJ/mol at the border.
"""

import os as _os
import signal as _signal
import sys as _sys
from pathlib import Path as _Path

if _Path(_sys.argv[0]).name == "attnforce" and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:

    def _interrupted(signum, frame):
        """Ctrl-C while the command line loads its libraries, before :func:`attnforce.cli.main` takes it over: one
        line, not the traceback of whatever import it stopped, and an exit that no library's ``except:`` can
        swallow (nothing has been written yet)."""
        print("ERROR attnforce: interrupted", file=_sys.stderr, flush=True)
        _os._exit(130)

    _signal.signal(_signal.SIGINT, _interrupted)

# torch first: openmm loads openmm-torch's kernels when it is first imported, and they need the libraries
# that importing torch loads (libnvrtc). Imported the other way round, no platform supports TorchForce.
try:
    import torch  # noqa: F401, E402
except (ImportError, OSError) as _error:
    _reason = " ".join(str(_error).split())
    _message = (
        f"PyTorch could not be loaded ({_reason}): a memory limit such as `ulimit -v` below the few GB of address "
        "space its libraries map, or a broken installation of torch (reinstall it)"
    )
    if _Path(_sys.argv[0]).name == "attnforce":  # the command line: one line, as for every other failure
        print(f"ERROR attnforce: {_message}", file=_sys.stderr)
        raise SystemExit(2) from None
    raise ImportError(_message) from _error

__version__ = "0.1.0"
