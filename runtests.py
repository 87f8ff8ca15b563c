#!/usr/bin/env python3
"""Run the whole test suite: ``python3 runtests.py [pytest arguments]``.

Creates ``.venv`` on first use and installs the project with its test
extras, then runs pytest in it. With no environment variables the suite runs
on SQLite and kombu's filesystem broker; set ``DW_DATABASE=postgres``,
``CELERY_BROKER_URL`` and ``CELERY_RESULT_BACKEND`` to run it on real services.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DW_VENV", ROOT / ".venv"))


def ensure_venv(extras: str = "test") -> str:
    """Create the virtualenv and install the project into it; return its python."""
    python = VENV / "bin" / "python"
    marker = VENV / f".installed-{extras or 'base'}"
    if not python.exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    stamp = str(max((ROOT / f).stat().st_mtime for f in ("setup.cfg", "pyproject.toml")))
    if not marker.exists() or marker.read_text() != stamp:
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        print(f"Installing django-workflows{f'[{extras}]' if extras else ''} ...", flush=True)
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
                target,
            ],
            check=True,
        )
        marker.write_text(stamp)
    return str(python)


def main() -> int:
    python = ensure_venv()
    return subprocess.call([python, "-m", "pytest", *sys.argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
