#!/usr/bin/env python3
"""Start the example project: Django's server, a Celery worker and celery beat.

    python3 rundemo.py [--port 8000]

Creates ``.venv`` on first use, installs the project into it, migrates the
SQLite database under ``.var/``, sets a fresh password for the ``admin``
login and prints it, then runs the three processes on kombu's filesystem
broker until Ctrl-C, which stops all of them.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time

from runtests import ROOT, ensure_venv

EXAMPLE = ROOT / "example_project"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args()
    python = ensure_venv(extras="api")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "PYTHONPATH": str(EXAMPLE),
        "PYTHONUNBUFFERED": "1",
    }

    def manage(*args: str) -> None:
        subprocess.run([python, "manage.py", *args], cwd=EXAMPLE, env=env, check=True)

    manage("migrate", "--verbosity", "0")
    password = secrets.token_urlsafe(9)
    manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        "u = U.objects.filter(username='admin').first() or U(username='admin'); "
        f"u.is_staff = u.is_superuser = True; u.set_password({password!r}); u.save()",
    )
    celery = [python, "-m", "celery", "-A", "example_project"]
    commands = {
        "web": [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{options.port}"],
        "worker": [*celery, "worker", "-l", "info", "-c", "2", "--without-gossip"],
        "beat": [*celery, "beat", "-l", "info"],
    }
    # Ctrl-C (or SIGTERM) reaches only this process, which stops the others in order.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    processes = {
        name: subprocess.Popen(command, cwd=EXAMPLE, env=env, start_new_session=True)
        for name, command in commands.items()
    }
    print(
        f"\n  django-workflows demo: http://127.0.0.1:{options.port}/admin/\n"
        f"  login: admin  password: {password}\n"
        "  Ctrl-C stops the server, the worker and beat.\n",
        flush=True,
    )
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        failed = [name for name, p in processes.items() if p.poll() is not None]
        print(f"Stopped because {', '.join(failed)} exited.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    finally:
        stop(processes)


def stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM (a warm shutdown for the worker), then SIGKILL after 15 s."""
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
