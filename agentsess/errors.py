"""The one error type for expected failures, and the exit codes agentsess documents.

Every expected failure raises :class:`AgentsessError` with a one-line message and an exit
code; the CLI boundary prints ``agentsess: error: <message>`` on stderr and exits with it.
"""

# Exit codes of commands other than `run` (see README, "Exit codes").
CHECK_FAILED = 1  # a check said no: invalid token, failed verification, denied
USAGE = 2  # bad arguments, bad config, unknown run id
STATE = 4  # the data root or store cannot be used (unwritable, corrupted)
DENIED = 5  # a request beyond a ceiling, for library callers (`run` itself exits 125 on refusal)

# Exit codes of `run` besides the child's own (as `env` and `timeout` use them).
RUN_FAILED = 125  # agentsess itself failed (store, receipts, supervisor)
RUN_NOT_EXECUTABLE = 126
RUN_NOT_FOUND = 127
RUN_STOPPED = 124  # agentsess stopped the child: the run was revoked, or expired under on_expiry = "stop"


class AgentsessError(Exception):
    """An expected failure: a one-line message and the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = USAGE):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
