"""Shell commands as the guard sees them: a command line parsed into the simple commands it
would run, each normalised, and the profile's rules matched against each one.

A model that wants to get a command past a rule spells it differently: ``git  push``,
``/usr/bin/git push``, ``git -C . push``, ``cd . && git push``, ``env X=1 git push``,
``sh -c 'git push'``, ``g$'i't push``, ``echo $(git push)``. So a rule's ``args`` glob is
matched against each simple command, after the shell has been taken out of the way:

- the line is parsed by tree-sitter-bash into commands (``&&``, ``||``, ``;``, ``|``,
  newlines, subshells, ``{ …; }``, ``if``/``for``/``while``/``case`` bodies, function
  bodies, ``$(…)``, backticks, ``<(…)``); a script given to ``sh -c``/``bash -c`` (and the
  other shells), to ``eval``, in a heredoc or here-string read by a shell, or to
  ``find -exec`` and ``xargs`` is parsed the same way, recursively;
- each word is what the shell would pass: quotes removed, ``$'…'`` decoded, backslash
  escapes and line continuations undone; a word with an expansion (``$X``, ``${X}``,
  ``$(…)``, ``$((…))``, brace expansion) is *dynamic*: its value is not known here;
- leading variable assignments go, so do the wrappers that run their arguments as a
  command (``env``, ``command``, ``exec``, ``builtin``, ``nohup``, ``time``, ``nice``,
  ``timeout``, ``stdbuf``, ``setsid``, ``ionice``, ``sudo``, ``doas``, ``xargs``), with
  their options; a command name given as a path becomes its basename; git's global options
  (``-C``, ``-c``, ``--git-dir`` …) are dropped, so ``git -C . push`` is ``git push``.

The normalised command is its words joined by one space: ``git push origin main``.

Matching (:func:`decide_command`): each simple command goes through the rules in order and
the first that applies decides for it; the command line gets the most restrictive of those
decisions (deny, then ask, then no decision, then allow). A rule that would restrict
(deny, ask, or a rule whose scope the run lacks) applies when it *could* match: for a
command with a dynamic word, when its text up to the first unknown character agrees with
the pattern's literal start (so ``git $SUB`` is held by a ``git push*`` deny). A rule that
would allow applies only when it matches the text as written and the command name is
known. A line that cannot be parsed, or nests deeper than :data:`MAX_DEPTH`, is denied
whenever any rule with an ``args`` pattern exists for the tool.

Not seen through (documented): programs that run code of their own (``python -c``,
``perl -e``, ``make``, a script file, ``git`` aliases from a config file). Profiles that
must be strict use ``default_decision = "deny"`` with allow rules.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

MAX_DEPTH = 8
MAX_COMMANDS = 1000
MAX_LENGTH = 256 * 1024  # twice what Linux lets one argument (`sh -c STRING`) be

SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "yash", "posh"))
_RESTRICTIVE = {"deny": 3, "ask": 2, "observe": 1, "allow": 0}


class SimpleCommand:
    """One command the shell would run: its words (a dynamic word as written), the index of
    the first unknown character of ``text`` (None when every word is known), and whether its
    name itself is unknown. (Plain slotted classes here, not dataclasses: this module is on the
    hook's start-up path, where building dataclasses costs milliseconds.)"""

    __slots__ = ("name_unknown", "text", "unknown_from", "words")

    def __init__(self, words: tuple[str, ...], text: str, unknown_from: int | None = None,
                 name_unknown: bool = False):
        self.words = words
        self.text = text
        self.unknown_from = unknown_from
        self.name_unknown = name_unknown

    @property
    def static_prefix(self) -> str:
        return self.text if self.unknown_from is None else self.text[: self.unknown_from]

    def __repr__(self) -> str:
        return f"SimpleCommand({self.text!r}, unknown_from={self.unknown_from}, name_unknown={self.name_unknown})"


class Parsed:
    """The simple commands of a command line, or why it could not be parsed."""

    __slots__ = ("commands", "error")

    def __init__(self, commands: tuple[SimpleCommand, ...], error: str | None = None):
        self.commands = commands
        self.error = error


class Unparseable(Exception):
    pass


class _Word:
    __slots__ = ("known", "static", "text")

    def __init__(self, text: str, static: bool, known: int = -1):
        self.text = text
        self.static = static
        # characters of ``text`` before the first unknown one
        self.known = (len(text) if static else 0) if known < 0 else known


_parser = None


def _bash_language():
    """tree-sitter-bash's language, loaded from its extension module without running the
    package's ``__init__`` (which imports importlib.resources: ~6 ms on every hook)."""
    import importlib.machinery
    import importlib.util
    import os

    spec = importlib.util.find_spec("tree_sitter_bash")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_binding" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader("tree_sitter_bash._binding", path)
                binding_spec = importlib.util.spec_from_file_location("tree_sitter_bash._binding", path,
                                                                      loader=loader)
                if binding_spec is not None:
                    module = importlib.util.module_from_spec(binding_spec)
                    loader.exec_module(module)
                    return module.language()
    import tree_sitter_bash

    return tree_sitter_bash.language()


def _get_parser():
    global _parser
    if _parser is None:
        import tree_sitter

        _parser = tree_sitter.Parser(tree_sitter.Language(_bash_language()))
    return _parser


def join_continuations(text: str) -> str:
    """``text`` with backslash-newline removed where bash removes it (outside single quotes
    and ``$'…'``): tree-sitter-bash splits ``pu\\<newline>sh`` into two words, bash does not."""
    if "\\\n" not in text:
        return text
    out = []
    i, n = 0, len(text)
    state = "plain"
    while i < n:
        c = text[i]
        if state == "plain":
            if c == "\\" and i + 1 < n:
                if text[i + 1] == "\n":
                    i += 2
                    continue
                out.append(text[i : i + 2])
                i += 2
                continue
            if c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "$" and i + 1 < n and text[i + 1] == "'":
                out.append("$'")
                i += 2
                state = "ansi"
                continue
        elif state == "double":
            if c == "\\" and i + 1 < n:
                if text[i + 1] == "\n":
                    i += 2
                    continue
                out.append(text[i : i + 2])
                i += 2
                continue
            if c == '"':
                state = "plain"
        elif state == "single":
            if c == "'":
                state = "plain"
        elif state == "ansi":
            if c == "\\" and i + 1 < n:
                out.append(text[i : i + 2])
                i += 2
                continue
            if c == "'":
                state = "plain"
        out.append(c)
        i += 1
    return "".join(out)


_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
_ANSI_RE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|[0-7]{1,3}|c.|.)", re.DOTALL)


def decode_ansi_c(body: str) -> str:
    """The value of ``$'body'`` as bash gives it."""

    def one(m: re.Match) -> str:
        e = m.group(1)
        if e[0] in "xuU" and len(e) > 1:
            try:
                return chr(int(e[1:], 16))
            except (ValueError, OverflowError):
                return m.group(0)
        if e[0] in "01234567":
            return chr(int(e, 8) & 0xFF)
        if e[0] == "c" and len(e) == 2:
            return chr(ord(e[1].upper()) ^ 0x40)
        return _ANSI_SIMPLE.get(e, "\\" + e)

    value = _ANSI_RE.sub(one, body)
    # bash stops a $'…' string at a NUL it produced
    return value.split("\0", 1)[0]


def _unescape_plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _unescape_double(text: str) -> str:
    return re.sub(r'\\([$`"\\\n])', lambda m: "" if m.group(1) == "\n" else m.group(1), text)


_REDIRECTS = frozenset(("file_redirect", "heredoc_redirect", "herestring_redirect"))
_WORD_NODES = frozenset((
    "word", "string", "raw_string", "ansi_c_string", "translated_string", "concatenation", "number",
    "simple_expansion", "expansion", "command_substitution", "process_substitution", "arithmetic_expansion",
))
_FD_WORD = re.compile(r"^(\d+|\{[A-Za-z_][A-Za-z0-9_]*\})$")
_BRACE = re.compile(r"\{[^{}]*(,|\.\.)[^{}]*\}")
_DYNAMIC_NODES = frozenset((
    "simple_expansion", "expansion", "command_substitution", "process_substitution",
    "arithmetic_expansion", "brace_expression",
))


def _text(node) -> str:
    return node.text.decode("utf-8", "surrogateescape")


def _word(node) -> _Word:
    """What the shell passes for the word ``node``."""
    kind = node.type
    if kind in ("word", "number", "command_name", "special_variable_name", "variable_name"):
        if kind == "command_name":
            if node.named_child_count != 1:
                return _Word(_text(node), False)
            return _word(node.named_children[0])
        raw = _text(node)
        if "\n" in raw:
            # tree-sitter-bash glues a line that starts with a backslash onto the line before
            # (`ls` newline `\git push` is one command to it, two to bash): not trusted
            raise Unparseable("a word runs across a line break")
        if _BRACE.search(raw):
            return _Word(raw, False, raw.index("{"))
        return _Word(_unescape_plain(raw), True)
    if kind == "raw_string":
        return _Word(_text(node)[1:-1], True)
    if kind == "ansi_c_string":
        return _Word(decode_ansi_c(_text(node)[2:-1]), True)
    if kind in ("string", "translated_string"):
        parts: list[_Word] = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(_Word(_unescape_double(_text(child)), True))
            else:
                parts.append(_Word(_text(child), False))
        return _concat(parts)
    if kind == "concatenation":
        pieces = [_word(c) for c in node.children]
        joined = _concat(pieces)
        unquoted = "".join(_text(c) for c in node.children if c.type == "word")
        if joined.static and ("{" in unquoted and "}" in unquoted and ("," in unquoted or ".." in unquoted)):
            return _Word(joined.text, False, joined.text.find("{") if "{" in joined.text else 0)
        return joined
    if kind in _DYNAMIC_NODES:
        return _Word(_text(node), False)
    # anything else (a glob the grammar names, a file descriptor, ...) is taken as written
    return _Word(_text(node), not _has_dynamic(node))


def _has_dynamic(node) -> bool:
    if node.type in _DYNAMIC_NODES:
        return True
    return any(_has_dynamic(c) for c in node.children)


def _concat(parts: list[_Word]) -> _Word:
    text = "".join(p.text for p in parts)
    known = 0
    for p in parts:
        if not p.static:
            known += p.known
            return _Word(text, False, known)
        known += len(p.text)
    return _Word(text, True)


class _Walker:
    def __init__(self, depth: int):
        self.depth = depth
        self.out: list[SimpleCommand] = []
        self.trailing: dict = {}  # a command's byte range -> the redirections written after it

    def add(self, command: SimpleCommand) -> None:
        if len(self.out) >= MAX_COMMANDS:
            raise Unparseable(f"more than {MAX_COMMANDS} commands")
        self.out.append(command)

    def script(self, text: str) -> None:
        if self.depth >= MAX_DEPTH:
            raise Unparseable(f"nested deeper than {MAX_DEPTH} shells")
        inner = _Walker(self.depth + 1)
        inner.walk_source(text)
        for c in inner.out:
            self.add(c)

    def walk_source(self, text: str) -> None:
        if "\0" in text:
            raise Unparseable("the command holds a NUL character")
        if len(text) > MAX_LENGTH:
            raise Unparseable(f"the command is longer than {MAX_LENGTH} characters")
        source = join_continuations(text)
        tree = _get_parser().parse(source.encode("utf-8", "surrogateescape"))
        root = tree.root_node
        if root.has_error:
            raise Unparseable("the shell syntax is not valid (or not understood)")
        self.walk(root)

    def walk(self, node) -> None:
        kind = node.type
        if kind == "command":
            self.command(node, self.trailing.pop(node.byte_range, []))
            return
        if kind == "redirected_statement":
            body = node.child_by_field_name("body")
            redirects = [c for c in node.children if body is None or c.byte_range != body.byte_range]
            for c in redirects:
                self.walk(c)
            if body is not None:
                trailing = [c for c in redirects if c.type in _REDIRECTS]
                # tree-sitter-bash hangs `a && b 2>x c` on the whole list: the redirection (and
                # the words it swallowed) belong to the last simple command
                last = body
                while last.type in ("list", "pipeline", "negated_command") and last.named_children:
                    last = last.named_children[-1]
                if last.type == "command":
                    self.trailing[last.byte_range] = trailing
                elif any(self._redirect_words(r) for r in trailing):
                    raise Unparseable("words after a redirection of a compound command")
                self.walk(body)
            return
        for child in node.children:
            self.walk(child)

    def command(self, node, trailing: list) -> None:
        """One simple command: its words, including those tree-sitter-bash files under a
        redirection (``git 2>/dev/null push`` is ``git push``), without a file descriptor
        written before a redirection (``0<file``, ``{fd}>file``)."""
        children = list(node.children)
        after = children + list(trailing)
        words: list[_Word] = []
        stdin = []
        for index, child in enumerate(children):
            if child.type == "variable_assignment":
                self.walk(child)  # substitutions inside run too
                continue
            if child.type in _REDIRECTS:
                self.walk(child)
                if child.type in ("heredoc_redirect", "herestring_redirect"):
                    stdin.append(child)
                words += self._redirect_words(child, after[index + 1] if index + 1 < len(after) else None)
                continue
            if child.type == "comment":
                continue
            following = after[index + 1] if index + 1 < len(after) else None
            if (following is not None and following.type in _REDIRECTS
                    and following.start_byte == child.end_byte and _FD_WORD.match(_text(child))):
                continue
            words.append(_word(child))
            if _has_dynamic(child):
                self.walk(child)
        for index, redirect in enumerate(trailing):
            if redirect.type in ("heredoc_redirect", "herestring_redirect"):
                stdin.append(redirect)
            words += self._redirect_words(redirect, trailing[index + 1] if index + 1 < len(trailing) else None)
        if not words:
            return
        self.normalise(words, stdin)

    def _redirect_words(self, redirect, following=None) -> list[_Word]:
        """Arguments that tree-sitter-bash puts inside a redirection node after its target
        (less a file descriptor that belongs to the next redirection: ``2>x 0<y``)."""
        named = [c for c in redirect.named_children if c.type in _WORD_NODES]
        if redirect.type == "heredoc_redirect" or any(c.type in ("<&-", ">&-") for c in redirect.children):
            extra = named  # no target: a closed descriptor, or a heredoc (whose body is not a word)
        else:
            extra = named[1:]
        if (extra and following is not None and following.type in _REDIRECTS
                and following.start_byte == extra[-1].end_byte and _FD_WORD.match(_text(extra[-1]))):
            extra = extra[:-1]
        return [_word(c) for c in extra]

    def normalise(self, words: list[_Word], stdin: list) -> None:
        """Strip assignments and wrappers, then record the command (and any it runs)."""
        words = list(words)
        while words:
            while words and words[0].static and _is_assignment(words[0].text):
                words.pop(0)
            if not words:
                return
            head = words[0]
            if not head.static:
                self.emit(words, name_unknown=True)
                return
            name = head.text.rsplit("/", 1)[-1] or head.text
            words[0] = _Word(name, True)
            rest = words[1:]
            if name in _WRAPPERS:
                after, run_rest = _WRAPPERS[name](rest)
                if after is None:  # a wrapper option we cannot read: the command is unknown
                    self.emit(words, name_unknown=True)
                    return
                if run_rest is not None:
                    # env -S STRING: the string is split into words
                    after = run_rest + after
                if not after:
                    self.emit(words)
                    return
                words = after
                continue
            if name == "eval":
                if all(w.static for w in rest):
                    self.emit(words)
                    self.script(" ".join(w.text for w in rest))
                else:
                    self.emit(words, name_unknown=True)
                return
            if name == "busybox" and rest:
                words = rest
                continue
            if name in SHELLS:
                self.shell(words, stdin)
                return
            if name == "alias":
                # with expand_aliases an alias runs its value: its commands are checked as commands
                self.emit(words)
                for w in rest:
                    if not w.static:
                        self.emit(words, name_unknown=True)
                    elif "=" in w.text:
                        self.script(w.text.split("=", 1)[1])
                return
            if name in _SCRIPT_RUNNERS:
                self.emit(words)
                script = _SCRIPT_RUNNERS[name](rest)
                if script is None:
                    self.emit(words, name_unknown=True)
                elif isinstance(script, str):
                    self.script(script)
                else:
                    self.normalise(script, [])
                return
            if name == "xargs":
                self.xargs(words)
                return
            if name == "git":
                words = _git(words)
            if name in ("find", "fd"):
                self.find_exec(words)
            self.emit(words)
            return

    def emit(self, words: list[_Word], name_unknown: bool = False) -> None:
        text_parts = []
        unknown_from = None
        pos = 0
        for i, w in enumerate(words):
            if i:
                text_parts.append(" ")
                pos += 1
            if not w.static and unknown_from is None:
                unknown_from = pos + w.known
            text_parts.append(w.text)
            pos += len(w.text)
        if name_unknown:
            unknown_from = 0
        self.add(SimpleCommand(tuple(w.text for w in words), "".join(text_parts), unknown_from, name_unknown))

    def shell(self, words: list[_Word], stdin: list) -> None:
        """``sh -c SCRIPT``, ``bash <<EOF``, ``bash -s``, ``sh FILE``."""
        self.emit(words)
        i = 1
        script_next = False
        reads_stdin = False
        while i < len(words):
            w = words[i]
            if not w.static:
                self.emit(words, name_unknown=True)
                return
            t = w.text
            if t == "--":
                i += 1
                break
            if t in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
                i += 2
                continue
            if t.startswith("--"):
                i += 1
                continue
            if len(t) > 1 and t[0] in "-+" and t[1:].isalpha():
                if "c" in t[1:] and t[0] == "-":
                    script_next = True
                if "s" in t[1:]:
                    reads_stdin = True
                i += 1
                continue
            break
        if script_next:
            if i >= len(words):
                raise Unparseable(f"{words[0].text} -c without a script")
            if not words[i].static:
                self.emit(words, name_unknown=True)
                return
            self.script(words[i].text)
            return
        if i < len(words) and not reads_stdin:
            return  # sh FILE: runs a file, recorded as the command itself
        for redirect in stdin:
            body = _stdin_script(redirect)
            if body is None:
                self.emit(words, name_unknown=True)
            else:
                self.script(body)
            return
        # reads commands from a pipe or a terminal: what it runs is not known here
        self.emit(words, name_unknown=True)

    def xargs(self, words: list[_Word]) -> None:
        self.emit(words)
        i = 1
        with_arg = set("IadEeLlnPsD")
        while i < len(words):
            w = words[i]
            if not w.static:
                self.emit(words[i:], name_unknown=True)
                return
            t = w.text
            if t == "--":
                i += 1
                break
            if t.startswith("--"):
                i += 1 if "=" in t or t in ("--null", "--no-run-if-empty", "--verbose", "--interactive",
                                              "--exit", "--open-tty", "--show-limits") else 2
                continue
            if t.startswith("-") and len(t) > 1:
                flag = t[1]
                i += 2 if flag in with_arg and len(t) == 2 else 1
                continue
            break
        inner = words[i:]
        if inner:
            # the input lines become more arguments: the command's tail is unknown
            self.normalise(inner + [_Word("", False)], [])

    def find_exec(self, words: list[_Word]) -> None:
        i = 0
        while i < len(words):
            t = words[i].text
            if words[i].static and t in ("-exec", "-execdir", "-ok", "-okdir", "-x", "--exec", "-X", "--exec-batch"):
                j = i + 1
                while j < len(words) and not (words[j].static and words[j].text in (";", "+", "\\;")):
                    j += 1
                if j > i + 1:
                    self.normalise(words[i + 1 : j], [])
                i = j
            i += 1


def _stdin_script(redirect) -> str | None:
    if redirect.type == "heredoc_redirect":
        start = next((c for c in redirect.children if c.type == "heredoc_start"), None)
        body = next((c for c in redirect.children if c.type == "heredoc_body"), None)
        if body is None:
            return ""
        quoted = start is not None and any(q in _text(start) for q in "'\"\\")
        if not quoted and _has_dynamic(body):
            return None
        return _text(body)
    word = next((c for c in redirect.named_children), None)
    if word is None:
        return ""
    w = _word(word)
    return w.text if w.static else None


def _is_assignment(text: str) -> bool:
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=", text)
    return m is not None


def _options(rest: list[_Word], with_arg: str, long_with_arg: tuple[str, ...] = (), stop_at_positional: int = 0):
    """Skip a wrapper's options; returns the words of the command it runs, or None when an
    option is dynamic. ``stop_at_positional`` positional words (timeout's DURATION) are
    skipped too."""
    i = 0
    while i < len(rest):
        w = rest[i]
        if not w.static:
            return None
        t = w.text
        if t == "--":
            i += 1
            break
        if t.startswith("--") and len(t) > 2:
            name = t.split("=", 1)[0]
            i += 2 if (name in long_with_arg and "=" not in t) else 1
            continue
        if t.startswith("-") and len(t) > 1:
            flags = t[1:]
            takes = next((k for k, f in enumerate(flags) if f in with_arg), None)
            i += 2 if takes is not None and takes == len(flags) - 1 else 1
            continue
        break
    rest = rest[i:]
    for _ in range(stop_at_positional):
        if not rest:
            return rest
        if not rest[0].static:
            return None
        rest = rest[1:]
    return rest


def _plain(with_arg: str = "", long_with_arg: tuple[str, ...] = (), positional: int = 0):
    def strip(rest):
        return _options(rest, with_arg, long_with_arg, positional), None

    return strip


def _env(rest: list[_Word]):
    i = 0
    split: list[_Word] | None = None
    while i < len(rest):
        w = rest[i]
        if not w.static:
            return None, None
        t = w.text
        if t == "--":
            i += 1
            break
        if t == "-":
            i += 1
            continue
        if t.startswith(("-S", "--split-string")):
            if t in ("-S", "--split-string"):
                if i + 1 >= len(rest) or not rest[i + 1].static:
                    return None, None
                value = rest[i + 1].text
                i += 2
            else:
                value = t[2:] if t.startswith("-S") else t.split("=", 1)[1]
                i += 1
            import shlex

            try:
                split = [_Word(s, True) for s in shlex.split(value)]
            except ValueError:
                return None, None
            continue
        if t.startswith("--"):
            name = t.split("=", 1)[0]
            i += 2 if name in ("--unset", "--chdir", "--block-signal", "--default-signal", "--ignore-signal") and "=" not in t else 1
            continue
        if t.startswith("-") and len(t) > 1:
            i += 2 if t[-1] in "uCS" and len(t) == 2 else 1
            continue
        if _is_assignment(t):
            i += 1
            continue
        break
    return rest[i:], split


_WRAPPERS = {
    "env": _env,
    "command": _plain(),
    "builtin": _plain(),
    "exec": _plain("a"),
    "nohup": _plain(),
    "time": _plain("fo", ("--format", "--output")),
    "nice": _plain("n", ("--adjustment",)),
    "timeout": _plain("sk", ("--signal", "--kill-after"), positional=1),
    "stdbuf": _plain("ioe", ("--input", "--output", "--error")),
    "setsid": _plain(),
    "ionice": _plain("cnp", ("--class", "--classdata", "--pid")),
    "sudo": _plain("ugpCDhrtTRU", ("--user", "--group", "--prompt", "--close-from", "--chdir", "--host",
                                   "--role", "--type", "--command-timeout", "--other-user", "--chroot")),
    "doas": _plain("uC"),
    "chrt": _plain("T", ("--sched-runtime", "--sched-period", "--sched-deadline"), positional=1),
    "taskset": _plain("", (), positional=1),
    "unbuffer": _plain(),
    "strace": _plain("oepsuEbIXPaA"),
    "ltrace": _plain("oepsuEnaA"),
    "caffeinate": _plain(),
    "chronic": _plain(),
}

def _command_option(rest: list[_Word], flags: tuple[str, ...], with_arg: str = "", positional: int = 0,
                    anywhere: bool = False):
    """For programs that run a command string given with ``-c`` (``su``, ``runuser``, ``flock``,
    ``script``): the string, the words of a command given directly (after ``positional``
    words), or None when it cannot be known. With ``anywhere`` (``su USER -c CMD``) positional
    words are skipped wherever they are, and no ``-c`` means an interactive shell: unknown."""
    i = 0
    seen = 0
    while i < len(rest):
        w = rest[i]
        if not w.static:
            return None
        t = w.text
        for flag in flags:
            if t == flag:
                if i + 1 >= len(rest) or not rest[i + 1].static:
                    return None
                return rest[i + 1].text
            if flag.startswith("--") and t.startswith(flag + "="):
                return t.split("=", 1)[1]
        if t == "--":
            return rest[i + 1:] or ""
        if t.startswith("-") and len(t) > 1:
            i += 2 if (len(t) == 2 and t[1] in with_arg) else 1
            continue
        if seen < positional:
            seen += 1
            i += 1
            continue
        if anywhere:
            i += 1
            continue
        return rest[i:]
    return None if anywhere else ""


def _watch(rest: list[_Word]):
    words = _options(rest, "ndqg", ("--interval", "--differences", "--equexit"))
    if words is None or not all(w.static for w in words):
        return None
    return " ".join(w.text for w in words)


_SCRIPT_RUNNERS = {
    "su": lambda rest: _command_option(rest, ("-c", "--command", "--session-command"), "gGsw", anywhere=True),
    "runuser": lambda rest: _command_option(rest, ("-c", "--command", "--session-command"), "gGsuw",
                                            anywhere=True),
    "flock": lambda rest: _command_option(rest, ("-c", "--command"), "wEe", positional=1),
    "script": lambda rest: _command_option(rest, ("-c", "--command"), "BITEmO", positional=1),
    "watch": _watch,
}

_GIT_WITH_ARG = ("-C", "-c", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--config-env",
                 "--exec-path", "--list-cmds", "--attr-source")


def _git(words: list[_Word]) -> list[_Word]:
    """``git [global options] SUBCOMMAND …`` without the global options. A ``-c alias.*``
    (or a dynamic option) makes the subcommand unknown."""
    i = 1
    unknown = False
    while i < len(words):
        w = words[i]
        if not w.static:
            break  # the subcommand (or an option) is not known: kept as a dynamic word
        t = w.text
        if t == "--":
            i += 1
            break
        if not t.startswith("-"):
            break
        name = t.split("=", 1)[0]
        if t in ("-c", "--config-env") and i + 1 < len(words):
            value = words[i + 1]
            if not value.static or value.text.lower().startswith("alias."):
                unknown = True
            i += 2
            continue
        if name in ("-c", "--config-env") or t.startswith("-c"):
            if "alias." in t.lower():
                unknown = True
            i += 1
            continue
        if name in _GIT_WITH_ARG and "=" not in t and name not in ("--exec-path", "--list-cmds"):
            i += 2
            continue
        if t.startswith("-C") and len(t) > 2:
            i += 1
            continue
        i += 1
    out = [words[0]]
    if unknown:
        out.append(_Word("", False))
    return out + words[i:]


def parse(text: str) -> Parsed:
    """The simple commands of the command line ``text``, parsed in another process
    (:func:`agentsess.core.guard.isolation.isolated`): a line the parser crashes or hangs on
    is unparseable, so denied where a rule could apply."""
    from agentsess.core.guard.isolation import isolated

    ok, answer = isolated(_parse_json, text, prepare=_get_parser)
    if not ok:
        return Parsed((), answer)
    try:
        found = tuple(SimpleCommand(tuple(words), text_, unknown, bool(name_unknown))
                      for words, text_, unknown, name_unknown in answer["commands"])
    except (KeyError, TypeError, ValueError):
        return Parsed((), "the shell parser gave no answer")
    return Parsed(found, answer["error"])


def _parse_json(text: str) -> dict:
    parsed = _parse_here(text)
    return {"error": parsed.error,
            "commands": [[list(c.words), c.text, c.unknown_from, c.name_unknown] for c in parsed.commands]}


def _parse_here(text: str) -> Parsed:
    walker = _Walker(0)
    try:
        walker.walk_source(text)
    except Unparseable as exc:
        return Parsed((), str(exc))
    except RecursionError:
        return Parsed((), "the command nests too deeply")
    return Parsed(tuple(walker.out))


def _literal_prefix(pattern: str) -> str:
    for i, c in enumerate(pattern):
        if c in "*?[":
            return pattern[:i]
    return pattern


def surely_matches(command: SimpleCommand, pattern: str) -> bool:
    return not command.name_unknown and fnmatchcase(command.text, pattern)


def could_match(command: SimpleCommand, pattern: str) -> bool:
    """Whether some value of ``command``'s unknown words would make ``pattern`` match."""
    if fnmatchcase(command.text, pattern):
        return True
    if command.unknown_from is None:
        return False
    known = command.static_prefix
    literal = _literal_prefix(pattern)
    return literal.startswith(known) or known.startswith(literal)


def restrictiveness(decision: str) -> int:
    return _RESTRICTIVE.get(decision, 3)


class Verdict:
    """What the rules say about one tool call: the decision (``allow``, ``deny``, ``ask``, or
    ``observe`` for no decision), why, the deciding rule's index and scope, and the
    normalised commands it looked at (empty for a call that is not a shell command)."""

    __slots__ = ("commands", "decision", "reason", "rule", "scope")

    def __init__(self, decision: str, reason: str, rule: int | None = None, scope: str | None = None,
                 commands: tuple[str, ...] = ()):
        self.decision = decision
        self.reason = reason
        self.rule = rule
        self.scope = scope
        self.commands = commands


def _tool_matches(pattern: str | None, tool: str) -> bool:
    if pattern is None or pattern == tool:
        return True
    return any(c in pattern for c in "*?[") and fnmatchcase(tool, pattern)


def shell_command(args) -> str | None:
    """The shell command line of a tool call's input, if it is one (``{"command": "…"}``)."""
    if isinstance(args, dict):
        value = args.get("command")
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            import shlex

            return shlex.join(value)
    return None


def match_rules(rules: list, tool: str, argument: str | None, command_line: str | None,
                holds, run_id: str, default: str) -> Verdict:
    """Apply ``rules`` (in order) to a call of ``tool``.

    ``command_line`` is the call's shell command, parsed and matched per simple command;
    otherwise ``argument`` (the call's main argument) is matched as one string. ``holds(scope)``
    says whether the run holds a scope; ``default`` is the decision for what no rule decides.
    """
    rules = [r for r in rules or [] if _tool_matches(r.get("tool"), tool)]
    if command_line is None:
        targets: tuple[SimpleCommand, ...] = (SimpleCommand((argument or "",), argument or ""),)
        shown: tuple[str, ...] = ()
    elif not any(r.get("args") is not None for r in rules):
        # no rule looks at the arguments: nothing to parse (the hook's common case stays cheap)
        targets, shown = (SimpleCommand((command_line,), command_line),), ()
    else:
        parsed = parse(command_line)
        if parsed.error is not None:
            guarded = [r for r in rules if r.get("args") is not None]
            if guarded:
                r = guarded[0]
                return Verdict("deny", f"the command cannot be checked against rule {r.get('index', 0) + 1}: "
                               f"{parsed.error}", r.get("index"), r.get("scope"))
            targets = (SimpleCommand((command_line,), command_line),)
        else:
            targets = parsed.commands or (SimpleCommand(("",), ""),)
        shown = tuple(c.text for c in parsed.commands)
    worst: Verdict | None = None
    for target in targets:
        verdict = _first_rule(rules, tool, target, holds, run_id, default, command_line is not None)
        if worst is None or restrictiveness(verdict.decision) > restrictiveness(worst.decision):
            worst = verdict
        if worst.decision == "deny":
            break
    assert worst is not None
    return Verdict(worst.decision, worst.reason, worst.rule, worst.scope, shown)


def _first_rule(rules, tool, target: SimpleCommand, holds, run_id, default, is_command) -> Verdict:
    for rule in rules:
        pattern = rule.get("args")
        index = rule.get("index", 0)
        label = f"rule {index + 1}"
        needed = rule.get("scope")
        lacks = bool(needed) and not holds(needed)
        effective = "deny" if lacks else rule.get("decision", "deny")
        if pattern is not None:
            test = could_match if effective != "allow" else surely_matches
            hit = next((p for p in ([pattern] if isinstance(pattern, str) else pattern) if test(target, p)), None)
            if hit is None:
                continue
            pattern = hit
        if lacks:
            return Verdict("deny", f"{label} needs scope {needed}, which run {run_id} lacks", index, needed)
        why = rule.get("reason") or f"{label} ({rule.get('tool')}{' ' + pattern if pattern else ''})"
        if is_command and pattern is not None and target.unknown_from is not None and not fnmatchcase(target.text, pattern):
            why += f"; `{target.text[:200]}` has a part not known before it runs, which could match {pattern!r}"
        elif is_command and pattern is not None:
            why += f"; matched `{target.text[:200]}`"
        return Verdict(effective, why, index, needed)
    return Verdict(default, f"no rule matched; default_decision is {default}")
