"""Manual pages for ``slurm-qpu`` and its sub-commands, built from the real argparse parser.

    python tools/manpages.py --out build/man        (make man; the package builds)

A build tool: it is not part of the installed package, and runs with a Python that has
slurm_qpu installed (the dev venv, or the package's own venv while it is built).

writes ``slurm-qpu.1`` and one ``slurm-qpu-<command>.1`` per sub-command of
:func:`slurm_qpu.cli.build_parser`. A sub-command with sub-commands of its own
(``config check``, ``config publish``) is documented in its command's page, one
subsection per action. Every option comes from the parser: its flags, metavar, help text
(``%(default)s`` expanded as argparse does) and default; descriptions and epilogs keep
their line layout where the parser's formatter keeps it. What the parser cannot know
(files, environment variables, related pages) is in the tables below.

The output is reproducible: the ``.TH`` date is ``SOURCE_DATE_EPOCH`` (UTC) when set and
empty otherwise, the version is ``slurm_qpu.__version__``. The plugin's own page,
``man/spank_qpu.8``, is written by hand. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from slurm_qpu import __version__
from slurm_qpu.cli.broker import DEFAULT_JOURNAL
from slurm_qpu.settings import CATALOG_NAME, DEFAULT_CONFIG
from slurm_qpu.shim_contract import DEFAULT_STATE_DIR

PROG = "slurm-qpu"
MANUAL = "slurm-qpu manual"

QRMI_CONFIG = DEFAULT_CONFIG
NAMES = str(Path(DEFAULT_CONFIG).with_name(CATALOG_NAME))
PLUGSTACK = "/etc/slurm/plugstack.conf"
PLUGSTACK_QPU = "/etc/slurm-qpu/plugstack.conf"
BROKER_CONFIG = "/etc/slurm-qpu/qrmi_config.json"
STATE_DIR = DEFAULT_STATE_DIR
JOURNAL = DEFAULT_JOURNAL

FILES: tuple[tuple[str, str], ...] = (
    (PLUGSTACK_QPU, "The plugin's line for Slurm's plugstack.conf (see spank_qpu(8)): the "
                    "QPU configuration, the virtualenv, and broker=URL in broker mode. The "
                    "packages link /etc/slurm/plugstack.conf.d/slurm-qpu.conf to it."),
    (QRMI_CONFIG, "The QPU configuration in QRMI's format, with the vendors' credentials. "
                  "In direct mode it is on every compute node, readable by root only; in "
                  "broker mode only the broker holds a configuration."),
    (NAMES, "The public list of QPU names and types (mode 0644) that users' sbatch, salloc "
            "and srun check --qpu against; written by 'slurm-qpu config publish', refreshed "
            "by the prolog when the configuration is newer."),
    (BROKER_CONFIG, "The broker's QPU configuration (mode 0600, owned by the broker's user): "
                    "the only copy of the credentials in broker mode."),
    (STATE_DIR, "Each compute node's QPU leases, one jobs/JOBID.json per job (root only); "
                "'slurm-qpu leases' lists them."),
    (JOURNAL, "The broker's SQLite journal of leases: a restarted broker loses none."),
)

ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("SLURM_QPU_BROKER", "The broker's URL for 'slurm-qpu status', before the broker= of "
                         "the slurm-qpu line in plugstack.conf."),
    ("QRMI_JOB_QPU_RESOURCES, QRMI_JOB_QPU_TYPES", "Inside a --qpu job: the job's QPUs and "
                                                   "their types, which 'slurm-qpu run' "
                                                   "chooses among (the legacy "
                                                   "SLURM_JOB_QPU_RESOURCES and "
                                                   "SLURM_JOB_QPU_TYPES are read too)."),
    ("QRMI_LIST_DELIMITER", "The separator of those lists (default ',')."),
    ("NAME_KEY", "Inside a --qpu job: the settings of the job's QPU NAME, its acquisition "
                 "token and timeout. spank_qpu(8) lists every variable a job gets."),
)

SEE_ALSO_MAIN = ("sbatch(1)", "salloc(1)", "srun(1)", "slurm.conf(5)", "spank_qpu(8)")

GENERIC_EXIT_STATUS = ("0 on success; 1 when the command fails, with the reason on standard "
                       "error; 2 on a usage error (a wrong option or argument).")


@dataclass(frozen=True)
class Extra:
    """What a sub-command's page says beyond its parser."""

    files: tuple[tuple[str, str], ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    see_also: tuple[str, ...] = ()


EXTRAS: dict[str, Extra] = {
    "config": Extra(files=(FILES[1], FILES[2])),
    "list": Extra(files=(FILES[1], FILES[2]), see_also=("sbatch(1)",)),
    "leases": Extra(files=(FILES[4],)),
    "slurm-conf": Extra(see_also=("gres.conf(5)", "slurm.conf(5)")),
    "status": Extra(files=((PLUGSTACK, "Where the broker's URL is read from (the broker= "
                                       "argument of the spank_qpu.so line), and the files "
                                       "of plugstack.conf.d beside it."),),
                    environment=(ENVIRONMENT[0],), see_also=("slurm-qpu-broker(1)",)),
    "jobs": Extra(see_also=("squeue(1)",)),
    "usage": Extra(see_also=("sacct(1)",)),
    "run": Extra(environment=ENVIRONMENT[1:], see_also=("srun(1)",)),
    "broker": Extra(files=(FILES[3], FILES[5],
                           ("/etc/default/slurm-qpu-broker", "BROKER_ARGS: extra arguments "
                                                             "of the slurm-qpu-broker "
                                                             "service."),
                           ("/var/log/slurm-qpu-broker/audit.log", "The service's audit log "
                                                                   "(--audit-log).")),
                    see_also=("munge(7)",)),
    "emulator": Extra(files=(("/etc/default/slurm-qpu-emulator", "EMULATOR_ARGS: extra "
                                                                 "arguments of the "
                                                                 "slurm-qpu-emulator service."),
                             )),
}


# ---- roff ------------------------------------------------------------------------------


def esc(text: str) -> str:
    """``text`` as roff text: backslashes, hyphens (as ``\\-``, so options copy and paste),
    tabs and non-ASCII characters escaped. Not for a line's first character: see
    :func:`line`."""
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\e")
        elif char == "-":
            out.append("\\-")
        elif char == "\t":
            out.append(" ")
        elif ord(char) > 126 or (ord(char) < 32 and char != "\n"):
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
    return "".join(out)


def line(roff: str) -> str:
    """An input line of (already escaped) text: one starting with ``.`` or ``'`` would be a
    request, so it gets a zero-width ``\\&`` in front."""
    return "\\&" + roff if roff.startswith((".", "'")) else roff


def arg(text: str) -> str:
    """A quoted macro argument."""
    return '"' + esc(text).replace('"', "\\(dq") + '"'


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def page_ref(ref: str) -> str:
    """``name(section)`` in bold, as man pages cite each other."""
    name, _, section = ref.partition("(")
    return f"{bold(name)}({section}"


def prose(text: str) -> list[str]:
    """Filled text, as argparse fills it: all whitespace collapsed, one input line."""
    words = " ".join(text.split())
    return [line(esc(words))] if words else []


def raw(text: str) -> list[str]:
    """Text whose line layout counts (RawDescriptionHelpFormatter): paragraphs at blank
    lines, runs of non-indented lines filled, indented runs kept as they are."""
    out: list[str] = []
    paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
    for number, paragraph in enumerate(p for p in paragraphs if p.strip()):
        if number:
            out.append(".PP")
        lines = paragraph.splitlines()
        i = 0
        while i < len(lines):
            if lines[i][:1].isspace():
                block: list[str] = []
                while i < len(lines) and (lines[i][:1].isspace() or not lines[i]):
                    block.append(lines[i])
                    i += 1
                out += [".RS 2", ".nf"]
                out += [line(esc(b)) for b in textwrap.dedent("\n".join(block)).splitlines()]
                out += [".fi", ".RE"]
            else:
                out.append(line(esc(lines[i].strip())))
                i += 1
    return out


def sentence(text: str) -> str:
    """A help string as a sentence: capital first letter, full stop at the end."""
    text = " ".join(text.split())
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def take_paragraph(text: str, label: str) -> tuple[str, str | None]:
    """Remove from ``text`` the sentence that starts a line with ``label`` (up to the line
    ending in a full stop); return the rest and that sentence without its label."""
    lines = text.splitlines()
    for start, current in enumerate(lines):
        if current.lower().startswith(label.lower()):
            end = start
            while end < len(lines) - 1 and not lines[end].rstrip().endswith("."):
                end += 1
            taken = " ".join(x.strip() for x in lines[start:end + 1])[len(label):].strip()
            return "\n".join(lines[:start] + lines[end + 1:]), taken
    return text, None


# ---- argparse --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # ("config", "check")
    parser: argparse.ArgumentParser
    help: str
    program: str | None = None  # a command of its own (slurm-qpu-emulator), not PROG's

    @property
    def prog(self) -> str:
        return self.program or " ".join((PROG, *self.path))


def subparsers_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[
        argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Command]:
    """The sub-commands of ``parser``, in the parser's order (aliases once)."""
    sub = subparsers_of(parser)
    if sub is None:
        return []
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    out: list[Command] = []
    seen: set[int] = set()
    for name, child in sub.choices.items():
        if id(child) not in seen:
            seen.add(id(child))
            out.append(Command((*path, name), child, helps.get(name, "")))
    return out


def documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's arguments its --help shows, sub-command choosers excepted."""
    return [a for a in parser._actions
            if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]


def metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if isinstance(action.metavar, tuple):
        return " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def args_of(action: argparse.Action) -> str:
    """The argument(s) an action takes, as roff: metavars in italics, argparse's nargs
    notation around them."""
    m = italic(metavar(action))
    nargs = action.nargs
    if nargs is None:
        return m
    if nargs == argparse.OPTIONAL:
        return f"[{m}]"
    if nargs == argparse.ZERO_OR_MORE:
        return f"[{m}\\ ...]"
    if nargs == argparse.ONE_OR_MORE:
        return f"{m}\\ [{m}\\ ...]"
    if nargs in (argparse.REMAINDER, argparse.PARSER):
        return f"{m}\\ ..."
    if isinstance(nargs, int):
        return "\\ ".join([m] * nargs)
    return m


def usage_item(action: argparse.Action) -> str:
    """One argument in a synopsis, unbreakable, with brackets when optional."""
    if not action.option_strings:
        return args_of(action)
    flags = " | ".join(bold(o) for o in action.format_usage().split(" | "))
    item = flags if action.nargs == 0 else f"{flags}\\ {args_of(action)}"
    return item if action.required else f"[{item}]"


def synopsis(command: Command) -> list[str]:
    parser = command.parser
    words: list[str] = []
    done: set[int] = set()
    groups = parser._mutually_exclusive_groups
    optionals = [a for a in documented(parser) if a.option_strings]
    for action in optionals:
        if id(action) in done:
            continue
        group = next((g for g in groups if action in g._group_actions), None)
        if group is None:
            words.append(usage_item(action))
            done.add(id(action))
            continue
        members = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        done.update(id(a) for a in members)
        inner = " | ".join(usage_item(a).removeprefix("[").removesuffix("]") for a in members)
        words.append(f"({inner})" if group.required else f"[{inner}]")
    words += [usage_item(a) for a in documented(parser) if not a.option_strings]
    if subparsers_of(parser) is not None:
        words.append(f"{italic('COMMAND')} ...")
    # .YS turns hyphenation back on: off again, it would split option and file names
    return [f".SY {arg(command.prog)}", *(line(w) for w in words), ".YS", ".nh"]


def formatted_by(parser: argparse.ArgumentParser, kind: type[argparse.HelpFormatter]) -> bool:
    """Whether the parser's --help uses ``kind`` (a raw formatter keeps line layout)."""
    formatter = parser.formatter_class
    return isinstance(formatter, type) and issubclass(formatter, kind)


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help argparse shows for ``action`` (``%(default)s`` and the like expanded),
    with its default added when the help does not give one."""
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    default = action.default
    shows = (isinstance(default, str | int | float) and not isinstance(default, bool)
             and default != argparse.SUPPRESS and action.nargs != 0)
    if shows and "default" not in text.lower():
        text = f"{text} (default: {default})".strip()
    return text


def options(parser: argparse.ArgumentParser) -> list[str]:
    """A ``.TP`` entry per argument: positionals first, then the options, as --help."""
    raw_help = formatted_by(parser, argparse.RawTextHelpFormatter)
    actions = documented(parser)
    out: list[str] = []
    for action in [a for a in actions if not a.option_strings] + \
                  [a for a in actions if a.option_strings]:
        if action.option_strings:
            tag = ", ".join(bold(o) for o in action.option_strings)
            if action.nargs != 0:
                tag += " " + args_of(action)
        else:
            tag = args_of(action)
        out += [".TP", line(tag)]
        text = help_text(parser, action)
        if text:
            out += raw(text) if raw_help else prose(text)
    return out


def text_of(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """A description or epilog, laid out as the parser's formatter lays it out."""
    if formatted_by(parser, argparse.RawDescriptionHelpFormatter):
        return raw(text)
    return prose(text)


# ---- pages -----------------------------------------------------------------------------


def date() -> str:
    """SOURCE_DATE_EPOCH as a UTC date; empty without it (never the clock: the pages must
    come out the same from the same source)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return ""
    try:
        seconds = int(epoch)
    except ValueError:
        raise SystemExit(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def header(name: str, section: int, when: str) -> list[str]:
    return [
        f'.\\" {name}.{section}: generated by tools/manpages.py from the argparse '
        "parser of its command; do not edit.",
        f".TH {arg(name.upper())} {section} {arg(when)} {arg(f'{PROG} {__version__}')} "
        f"{arg(MANUAL)}",
        ".nh",  # no hyphenation: it would split option and file names
        ".ad l",
    ]


def section(title: str) -> str:
    return f".SH {arg(title)}"


def definitions(items: Sequence[tuple[str, str]], tag_font: str = "B") -> list[str]:
    out: list[str] = []
    for tag, text in items:
        shown = ", ".join(bold(t) if tag_font == "B" else italic(t) for t in tag.split(", "))
        out += [".TP", line(shown), *prose(text)]
    return out


def see_also(refs: Sequence[str]) -> list[str]:
    """Cross references ordered by section, then name (man-pages(7))."""
    unique = sorted(set(refs), key=lambda r: (r.partition("(")[2], r))
    return [section("SEE ALSO"),
            *(line(page_ref(r) + ("," if n < len(unique) - 1 else ""))
              for n, r in enumerate(unique))]


def page_name(command: Command) -> str:
    return "-".join((PROG, *command.path))


def main_page(parser: argparse.ArgumentParser, when: str) -> str:
    top = Command((), parser, parser.description or "")
    description, _ = take_paragraph(parser.epilog or "", "Documentation:")
    out = header(PROG, 1, when)
    summary = " ".join(top.help.split()).rstrip(".")
    out += [section("NAME"), line(f"{esc(PROG)} \\- {esc(summary[:1].lower() + summary[1:])}")]
    out += [section("SYNOPSIS"), *synopsis(top)]
    out += [section("DESCRIPTION"), *text_of(parser, parser.description or "")]
    if description.strip():
        out += [".PP", *text_of(parser, description)]
    out += [".PP", line(f"Each command has its own manual page, "
                        f"{bold(PROG + '-')}{italic('COMMAND')}(1), and answers "
                        f"{bold('--help')}. The plugin and the {bold('--qpu')} option of "
                        f"{page_ref('sbatch(1)')}, {page_ref('salloc(1)')} and "
                        f"{page_ref('srun(1)')} are described in {page_ref('spank_qpu(8)')}.")]
    out.append(section("COMMANDS"))
    for command in commands(parser):
        out += [".TP", line(bold(command.path[-1]))]
        out += prose(sentence(command.help))
        out.append(line(f"See {page_ref(page_name(command) + '(1)')}."))
        nested = [c for c in walk(command) if c is not command]
        if nested:
            out.append(".RS")
            for action in nested:
                out += [".TP", line(bold(" ".join(action.path)))]
                out += prose(sentence(action.help))
            out.append(".RE")
    out += [section("OPTIONS"), *options(parser)]
    out += [section("EXIT STATUS"), *prose(GENERIC_EXIT_STATUS)]
    out += [section("ENVIRONMENT"), *definitions(ENVIRONMENT)]
    out += [section("FILES"), *definitions(FILES, tag_font="I")]
    refs = [page_name(c) + "(1)" for c in commands(parser)]
    out += see_also([*refs, *SEE_ALSO_MAIN])
    return "\n".join(out) + "\n"


def command_page(command: Command, when: str) -> str:
    parser = command.parser
    extra = EXTRAS.get(command.path[0], Extra())
    epilog, exit_status = take_paragraph(parser.epilog or "", "Exit status:")
    nested = [leaf for leaf in walk(command) if leaf is not command]
    name = page_name(command)
    out = header(name, 1, when)
    out += [section("NAME"), line(f"{esc(name)} \\- {esc(command.help)}")]
    out.append(section("SYNOPSIS"))
    for shown in [c for c in walk(command) if not commands(c.parser)]:
        out += synopsis(shown)
    out.append(section("DESCRIPTION"))
    out += text_of(parser, parser.description or sentence(command.help))
    if epilog.strip():
        out += [".PP", *text_of(parser, epilog)]
    out += [section("OPTIONS"), *options(parser)]
    if nested:
        out.append(section("COMMANDS"))
        for sub in nested:
            sub_epilog, sub_exit = take_paragraph(sub.parser.epilog or "", "Exit status:")
            exit_status = exit_status or sub_exit
            out += [f".SS {arg(sub.prog)}",
                    *text_of(sub.parser, sub.parser.description or sentence(sub.help))]
            if sub_epilog.strip():
                out += [".PP", *text_of(sub.parser, sub_epilog)]
            if documented(sub.parser):
                out += [".PP", "Options:", *options(sub.parser)]
    out += [section("EXIT STATUS"), *prose(exit_status or GENERIC_EXIT_STATUS)]
    if extra.environment:
        out += [section("ENVIRONMENT"), *definitions(extra.environment)]
    if extra.files:
        out += [section("FILES"), *definitions(extra.files, tag_font="I")]
    out += see_also([f"{PROG}(1)", "spank_qpu(8)", *extra.see_also])
    return "\n".join(out) + "\n"


def walk(command: Command) -> Iterator[Command]:
    """``command`` and every sub-command below it, depth first."""
    yield command
    for sub in commands(command.parser, command.path):
        yield from walk(sub)


def pages(parser: argparse.ArgumentParser | None = None, when: str | None = None
          ) -> dict[str, str]:
    """File name -> roff source of every page."""
    if parser is None:
        from slurm_qpu.cli import build_parser
        parser = build_parser()
    when = date() if when is None else when
    out = {f"{PROG}.1": main_page(parser, when)}
    for command in commands(parser):
        out[f"{page_name(command)}.1"] = command_page(command, when)
    return out


def emulator_pages(when: str | None = None) -> dict[str, str]:
    """The page of ``slurm-qpu-emulator``, a command of its own distribution (emulator/),
    which ships it: written with a Python that has slurm_qpu_emulator installed."""
    from slurm_qpu_emulator.cli import PROG as EMULATOR
    from slurm_qpu_emulator.cli import SUMMARY, build_parser

    command = Command(("emulator",), build_parser(), SUMMARY, program=EMULATOR)
    return {f"{EMULATOR}.1": command_page(command, date() if when is None else when)}


def write(out_dir: Path, generated: dict[str, str] | None = None) -> list[Path]:
    """Write every page into ``out_dir``; remove pages of sub-commands that are gone."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if generated is None:  # the product's pages: those of sub-commands that are gone go
        generated = pages()
        for stale in sorted(out_dir.glob(f"{PROG}-*.1")):
            if stale.name not in generated:
                stale.unlink()
    written: list[Path] = []
    for name, source in generated.items():
        path = out_dir / name
        path.write_text(source, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python tools/manpages.py",
                                  description="Write the manual pages of slurm-qpu "
                                              "(section 1) into a directory.")
    cli.add_argument("--out", required=True, metavar="DIR", help="where to write them")
    cli.add_argument("--emulator", action="store_true",
                     help="write the emulator's page (slurm-qpu-emulator.1) instead, which "
                          "its own package ships")
    args = cli.parse_args(argv)
    written = write(Path(args.out), emulator_pages() if args.emulator else None)
    print(f"wrote {len(written)} manual pages into {args.out}: "
          f"{', '.join(p.name for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
