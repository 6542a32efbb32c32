"""Usage mistakes on the command line: a short message and exit code 2, never a traceback.

Recent typer releases ship their own copy of click, whose exceptions are not click's; both kinds must
be caught."""

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["select", "--no-such-flag"], "No such option: --no-such-flag"),
        (["select", "--candidate"], "Option '--candidate' requires an argument"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["select", "--jobs", "many"], "Invalid value for '--jobs'"),
    ],
)
def test_usage_errors_are_one_message_and_exit_2(run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code == 2
    assert message in err and "Traceback" not in err + out
