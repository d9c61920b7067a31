"""The typer app's help texts, rendered for a terminal of 80 columns or more.

Generated: ENVCTL_UPDATE_HELP=1 pytest tests/unit/test_help_text.py (do not edit by hand).
Used by envctl/__main__.py to answer --help without importing typer.
"""

HELP: dict[str, str] = {
    "": """\
Usage: envctl [OPTIONS] COMMAND [ARGS]...

  Converge a whole environment - Terraform stacks and Kubernetes layers - from
  a Git repository.

Options:
  --version             Print envctl's version and exit.
  --install-completion  Install completion for the current shell.
  --show-completion     Show completion for the current shell, to copy it or
                        customize the installation.
  -h, --help            Show this message and exit.

Commands:
  version   Print envctl's version.
  validate  Check schema, references, cycles, Terraform and manifests...
  graph     Show the dependency graph and the order envctl converges in.
  plan      Plan every selected node and write a plan bundle; nothing is...
  rollback  Plan the environment as an earlier commit holds it; approve...
  approve   Record an approval bound to this plan's fingerprint,...
  apply     Converge the environment in dependency order; infrastructure...
  destroy   Delete every node (or NODE and what depends on it) in reverse...
  status    Last converged commit per node, the lock holder, the last...
  drift     Compare the live world with Git: exit 0 in sync, 2 drift, 1...
""",
    "apply": """\
Usage: envctl apply [OPTIONS] [PLAN]

  Converge the environment in dependency order; infrastructure changes need
  approval.

Arguments:
  [PLAN]  A saved plan (directory or id).

Options:
  -e, --env <str>            Environment (a directory under environments/).
  --repo <path>              Environment repository (default: the Git repo
                             around the current directory).
  --rev <str>                Use what this Git commit/branch/tag holds, not
                             the working tree (a plan made with --rev is
                             applied with the same --rev; its 'Apply it with'
                             line says so).
  --approve                  Use the approval recorded with envctl approve.
  --auto-approve             Apply without asking.
  --pending <str>            How far nodes re-planned during apply may go
                             without asking again: creates (only creates),
                             updates (creates and in-place updates) or any.
                             Default: ask again.
  --parallelism <int range>  Nodes converged at once.  [default: 4; x>=1]
  --resume                   Skip nodes an interrupted run of this plan
                             finished.
  --lock-timeout <float>     Seconds to wait for the lock.  [default: 0.0]
  --format <str>             text or json.  [default: text]
  --debug                    Show internal tracebacks for bug reports.
  -h, --help                 Show this message and exit.
""",
    "approve": """\
Usage: envctl approve [OPTIONS] {PLAN}

  Record an approval bound to this plan's fingerprint, environment and commit.

Arguments:
  PLAN  Plan directory or plan id.  [required]

Options:
  --by <str>       Who approves (default: $USER).
  --pending <str>  How far nodes re-planned during apply may go without asking
                   again: creates (only creates), updates (creates and in-
                   place updates) or any. Default: ask again.
  -e, --env <str>  Environment (a directory under environments/).
  --repo <path>    Environment repository (default: the Git repo around the
                   current directory).
  --format <str>   text or json.  [default: text]
  --debug          Show internal tracebacks for bug reports.
  -h, --help       Show this message and exit.
""",
    "destroy": """\
Usage: envctl destroy [OPTIONS]

  Delete every node (or NODE and what depends on it) in reverse dependency
  order.

Options:
  -e, --env <str>            Environment (a directory under environments/).
  --repo <path>              Environment repository (default: the Git repo
                             around the current directory).
  --rev <str>                Use what this Git commit/branch/tag holds, not
                             the working tree (a plan made with --rev is
                             applied with the same --rev; its 'Apply it with'
                             line says so).
  --target <str>             Only this node and every node depending on it
                             (repeatable).
  --out <path>               Directory for the plan bundle.
  --auto-approve             Apply without asking.
  --parallelism <int range>  Nodes converged at once.  [default: 4; x>=1]
  --lock-timeout <float>     Seconds to wait for the lock.  [default: 0.0]
  --format <str>             text or json.  [default: text]
  --debug                    Show internal tracebacks for bug reports.
  -h, --help                 Show this message and exit.
""",
    "drift": """\
Usage: envctl drift [OPTIONS]

  Compare the live world with Git: exit 0 in sync, 2 drift, 1 or 69 when
  something was not checked.

Options:
  -e, --env <str>  Environment (a directory under environments/).
  --repo <path>    Environment repository (default: the Git repo around the
                   current directory).
  --rev <str>      Use what this Git commit/branch/tag holds, not the working
                   tree (a plan made with --rev is applied with the same
                   --rev; its 'Apply it with' line says so).
  --format <str>   text, json, markdown or html.  [default: text]
  --output <path>  Write the report to this file.
  --notify         POST the summary to the configured webhooks.
  --webhook <str>  Also notify this URL (repeatable).
  --converge       Re-apply drifted layers.
  --auto-approve   With --converge: also re-apply drifted stacks.
  --every <str>    Keep checking on this schedule (e.g. 1h) until SIGTERM.
  --debug          Show internal tracebacks for bug reports.
  -h, --help       Show this message and exit.
""",
    "graph": """\
Usage: envctl graph [OPTIONS]

  Show the dependency graph and the order envctl converges in.

Options:
  -e, --env <str>  Environment (a directory under environments/).
  --repo <path>    Environment repository (default: the Git repo around the
                   current directory).
  --rev <str>      Use what this Git commit/branch/tag holds, not the working
                   tree (a plan made with --rev is applied with the same
                   --rev; its 'Apply it with' line says so).
  --format <str>   text, json, dot or mermaid.  [default: text]
  --debug          Show internal tracebacks for bug reports.
  -h, --help       Show this message and exit.
""",
    "plan": """\
Usage: envctl plan [OPTIONS]

  Plan every selected node and write a plan bundle; nothing is changed.

Options:
  -e, --env <str>            Environment (a directory under environments/).
  --repo <path>              Environment repository (default: the Git repo
                             around the current directory).
  --rev <str>                Use what this Git commit/branch/tag holds, not
                             the working tree (a plan made with --rev is
                             applied with the same --rev; its 'Apply it with'
                             line says so).
  --out <path>               Directory for the plan bundle.
  --target <str>             Plan only this node and what it needs
                             (repeatable).
  --changed-since <str>      Plan nodes affected by changes since this Git
                             ref.
  --detailed-exitcode        Exit 2 when there are changes, 0 when none.
  --parallelism <int range>  Nodes planned at once.  [default: 4; x>=1]
  --format <str>             text, json or markdown.  [default: text]
  --debug                    Show internal tracebacks for bug reports.
  -h, --help                 Show this message and exit.
""",
    "rollback": """\
Usage: envctl rollback [OPTIONS]

  Plan the environment as an earlier commit holds it; approve and apply it
  like any plan.

Options:
  -e, --env <str>            Environment (a directory under environments/).
  --repo <path>              Environment repository (default: the Git repo
                             around the current directory).
  --to REV                   The commit/branch/tag to roll back to (default:
                             the last commit at which every node converged,
                             from the run journal).
  --out <path>               Directory for the plan bundle.
  --parallelism <int range>  Nodes planned at once.  [default: 4; x>=1]
  --format <str>             text, json or markdown.  [default: text]
  --detailed-exitcode        Exit 2 when there are changes, 0 when none.
  --debug                    Show internal tracebacks for bug reports.
  -h, --help                 Show this message and exit.
""",
    "status": """\
Usage: envctl status [OPTIONS]

  Last converged commit per node, the lock holder, the last drift result.

Options:
  -e, --env <str>  Environment (a directory under environments/).
  --repo <path>    Environment repository (default: the Git repo around the
                   current directory).
  --format <str>   text or json.  [default: text]
  --debug          Show internal tracebacks for bug reports.
  -h, --help       Show this message and exit.
""",
    "validate": """\
Usage: envctl validate [OPTIONS]

  Check schema, references, cycles, Terraform and manifests without touching
  live systems.

Options:
  -e, --env <str>  Environment (a directory under environments/).
  --repo <path>    Environment repository (default: the Git repo around the
                   current directory).
  --rev <str>      Use what this Git commit/branch/tag holds, not the working
                   tree (a plan made with --rev is applied with the same
                   --rev; its 'Apply it with' line says so).
  --format <str>   text or json.  [default: text]
  --debug          Show internal tracebacks for bug reports.
  -h, --help       Show this message and exit.
""",
    "version": """\
Usage: envctl version [OPTIONS]

  Print envctl's version.

Options:
  -h, --help  Show this message and exit.
""",
}
