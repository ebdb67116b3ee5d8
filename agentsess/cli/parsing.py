"""The one parser of the hot commands (`run`, `check`, `hook`, `exec`, `token verify`,
`whoami`): argparse, with the command's summary from :mod:`agentsess.cli.commands`.

A command that runs another command (``with_command``) takes it after ``--``, or from the
first word that is not one of its own options, as `env` and `timeout` do. Everything from
there on is the child's, untouched: ``agentsess exec -- echo hello --source x`` runs
``echo hello --source x``. Bad arguments are one ``AgentsessError`` line with the command's
usage exit code, worded as the typer commands word theirs (``run: no such option: --bogus (see
`agentsess run --help`)``); ``-h``/``--help`` prints the help on stdout and exits 0, laid out
as typer lays out its commands' (``Usage:``, the description indented, ``Arguments:``,
``Options:``).
"""

import argparse
import os
import sys

from agentsess.cli.commands import BY_NAME
from agentsess.errors import USAGE, AgentsessError

TYPE_CHECKING = False  # not typing's: importing typing costs 5 ms of every hook
if TYPE_CHECKING:
    from typing import NoReturn

_COMMAND = "command"  # the dest of the child's argv
HELP_HELP = "Show this message and exit."  # typer's words for -h/--help


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help laid out as typer's (click's): ``Usage:``, text indented by two."""

    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)

    def _fill_text(self, text, width, indent):
        return "".join(indent + "  " + line if line.strip() else line for line in text.splitlines(keepends=True))


def _typer_words(message: str) -> str:
    """argparse's error messages in click's words (as the typer commands give them)."""
    import re

    m = re.fullmatch(r"unrecognized arguments: (.*)", message)
    if m:
        words = m.group(1).split()
        if words[0].startswith("-"):
            return f"no such option: {words[0]}"
        return f"got unexpected extra argument{'s' if len(words) > 1 else ''} ({' '.join(words)})"
    m = re.fullmatch(r"the following arguments are required: ([^,]*).*", message)
    if m:
        return f"missing argument '{m.group(1)}'"
    m = re.fullmatch(r"argument ([^:]*): expected one argument", message)
    if m:
        return f"option '{m.group(1).split('/')[0]}' requires an argument"
    m = re.fullmatch(r"argument ([^:]*): invalid choice: (.*) \(choose from (.*)\)", message)
    if m:
        return f"invalid value for '{m.group(1).split('/')[0]}': {m.group(2)} is not one of {m.group(3)}"
    m = re.fullmatch(r"argument ([^:]*): invalid (\w+) value: (.*)", message)
    if m:
        kind = {"int": "integer", "float": "number"}.get(m.group(2), m.group(2))
        return f"invalid value for '{m.group(1).split('/')[0]}': {m.group(3)} is not a valid {kind}"
    m = re.fullmatch(r"argument ([^:]*): (.*)", message, re.S)  # a type's own message
    if m:
        return f"invalid value for '{m.group(1).split('/')[0]}': {m.group(2)}"
    return message


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size finds it: $COLUMNS, stdout's, or 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class Parser(argparse.ArgumentParser):
    def __init__(
        self,
        name: str,
        description: str = "",
        *,
        usage: str | None = None,
        epilog: str | None = None,
        usage_exit: int = USAGE,
        with_command: bool = False,
        allow_abbrev: bool = False,
    ):
        summary = BY_NAME[name.split()[0]].summary
        super().__init__(
            prog=f"agentsess {name}",
            usage=usage,
            description=summary + ("\n\n" + description if description else ""),
            epilog=epilog,
            formatter_class=_Formatter,
            allow_abbrev=allow_abbrev,
        )
        self._positionals.title = "Arguments"
        self._optionals.title = "Options"
        self._option_string_actions["-h"].help = HELP_HELP
        self.name = name
        self.usage_exit = usage_exit
        self.with_command = with_command
        if with_command:
            self.add_argument(_COMMAND, nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def _get_formatter(self):
        # HelpFormatter asks shutil for the width (shutil imports bz2 and lzma: 3 ms of every
        # hook, paid even when no help is printed); os knows it as well
        return self.formatter_class(prog=self.prog, width=_columns() - 2)

    def error(self, message: str) -> "NoReturn":  # raises instead of exiting
        raise AgentsessError(f"{self.name}: {_typer_words(message)} (see `{self.prog} --help`)", self.usage_exit)

    def fail(self, message: str) -> "NoReturn":
        """A usage error found after parsing, worded like argparse's own."""
        self.error(message)

    def _fuse_values(self, argv: list[str]) -> list[str]:
        """``--opt WORD`` as ``--opt=WORD`` for every option that takes a value, up to the first
        ``--`` or non-option word: an option's value is the next word, whatever it looks like
        (as getopt has it), so ``exec -c --help`` runs ``--help`` in a shell. A bare ``--``
        is never a value: it always ends the options (``run --name -- x`` lacks a name)."""
        out, i = [], 0
        while i < len(argv):
            word = argv[i]
            if word == "--" or not word.startswith("-"):
                break
            action = self._option_string_actions.get(word)
            if action is not None and action.nargs is None and action.const is None and i + 1 < len(argv):
                if argv[i + 1] == "--":
                    break  # argparse says the option lacks its value
                out.append(f"{word}={argv[i + 1]}")
                i += 2
                continue
            out.append(word)
            i += 1
        return out + argv[i:]

    def parse(self, argv: list[str]) -> tuple[argparse.Namespace, list[str] | None]:
        """(our options, the child's argv): the child's is None when there is no ``--`` and
        no first non-option word (or, without ``with_command``, when there is no ``--``)."""
        argv = self._fuse_values(list(argv))
        command = None
        if "--" in argv:
            cut = argv.index("--")
            argv, command = argv[:cut], argv[cut + 1 :]
        args = self.parse_args(argv)
        if self.with_command:
            before = getattr(args, _COMMAND)
            delattr(args, _COMMAND)
            if before:  # the child started before the `--`, which is then the child's own
                command = before + (["--"] + command if command is not None else [])
        return args, command
