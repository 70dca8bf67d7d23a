"""Manual pages: slurm-qpu(1) and its commands generated from the argparse parser, and the
hand-written spank_qpu(8) kept complete against the plugin's source."""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_qpu import __version__, settings
from slurm_qpu.cli import build_parser
from slurm_qpu.config import ResourceDef
from slurm_qpu.jobenv.contract import Acquired, build
from slurm_qpu.request import selection
from slurm_qpu.vendors.builtin import vendors

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
manpages = importlib.import_module("manpages")  # a build tool, not in the installed package
SPANK_PAGE = REPO / "man" / "spank_qpu.8"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return manpages.pages(when="")


def plain(roff: str) -> str:
    """Roff text as a reader sees it, give or take layout: escapes undone, fonts dropped."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    for escaped, char in (("\\-", "-"), ("\\e", "\\"), ("\\&", ""), ("\\(dq", '"'),
                          ("\\(bu", "*"), ("\\ ", " ")):
        text = text.replace(escaped, char)
    return text


def tags(roff: str, section: str | None = None) -> list[str]:
    """The tag lines of the ``.TP`` entries (in one ``.SH`` section, or in all)."""
    out: list[str] = []
    current = None
    lines = roff.splitlines()
    for number, text in enumerate(lines):
        if text.startswith(".SH"):
            current = text[3:].strip().strip('"')
        elif text == ".TP" and (section is None or current == section):
            out.append(plain(lines[number + 1]))
    return out


def flat(roff: str) -> str:
    """The page's text as one line of single-spaced words (for looking up help texts)."""
    body = [plain(x) for x in roff.splitlines() if not x.startswith((".", "'"))]
    return " ".join(" ".join(body).split())


def every_command(parser: argparse.ArgumentParser) -> list[manpages.Command]:
    return [leaf for top in manpages.commands(parser) for leaf in manpages.walk(top)]


def groff_warnings(path: Path) -> str:
    groff = shutil.which("groff")
    assert groff, "groff is needed to check the manual pages (apt-get install groff-base)"
    proc = subprocess.run([groff, "-man", "-ww", "-z", "-Tutf8", str(path)],
                          capture_output=True, text=True, check=False)
    return proc.stderr + ("" if proc.returncode == 0 else f"exit {proc.returncode}")


# ---------------------------------------------------------------- slurm-qpu(1) pages


def test_every_sub_command_gets_a_page_and_a_line_in_the_main_page(
        pages: dict[str, str]) -> None:
    names = [c.path[0] for c in manpages.commands(build_parser())]
    assert len(names) >= 9  # config, list, leases, ..., broker: the parser was walked
    assert sorted(pages) == sorted(["slurm-qpu.1", *(f"slurm-qpu-{n}.1" for n in names)])
    main_commands = tags(pages["slurm-qpu.1"], "COMMANDS")
    for name in names:
        assert name in main_commands
        assert f"slurm\\-qpu\\-{name.replace('-', chr(92) + '-')}\\fR(1)" in \
            pages["slurm-qpu.1"]


def test_the_emulator_has_its_own_page_which_the_products_pages_do_not_name(
        pages: dict[str, str]) -> None:
    from slurm_qpu_emulator.cli import build_parser as emulator_parser

    (name, page), = manpages.emulator_pages(when="").items()
    assert name == "slurm-qpu-emulator.1"
    assert '.SY "slurm\\-qpu\\-emulator"' in page  # its own command, not a sub-command
    listed = tags(page)
    for action in manpages.documented(emulator_parser()):
        for option in action.option_strings:
            assert any(option in tag.replace(",", " ").split() for tag in listed), option
    assert "slurm-qpu-emulator.1" not in pages
    assert "emulator" not in flat(pages["slurm-qpu.1"])


def test_nested_sub_commands_are_sections_of_their_command_page(
        pages: dict[str, str]) -> None:
    page = pages["slurm-qpu-config.1"]
    assert '.SS "slurm\\-qpu config check"' in page
    assert '.SS "slurm\\-qpu config publish"' in page
    assert ".SY \"slurm\\-qpu config publish\"" in page


def test_every_option_of_every_sub_command_is_listed_with_its_help_in_its_page(
        pages: dict[str, str]) -> None:
    checked = 0
    for command in every_command(build_parser()):
        page = pages[f"slurm-qpu-{command.path[0]}.1"]
        listed = tags(page)
        text = flat(page)
        for action in manpages.documented(command.parser):
            for option in action.option_strings:
                assert any(option in tag.replace(",", " ").split() for tag in listed), \
                    (command.prog, option)
                checked += 1
            if not action.option_strings:
                assert any(manpages.metavar(action) in tag for tag in listed), \
                    (command.prog, action.dest)
            help_text = command.parser._get_formatter()._expand_help(action) \
                if action.help else ""
            assert " ".join(help_text.split()) in text, (command.prog, action.dest)
    assert checked > 50


def test_options_hidden_from_help_stay_out_of_the_pages(pages: dict[str, str]) -> None:
    jobs = next(c for c in manpages.commands(build_parser()) if c.path == ("jobs",))
    hidden = [o for a in jobs.parser._actions if a.help == argparse.SUPPRESS
              for o in a.option_strings]
    assert hidden  # --squeue, --scontrol
    for option in hidden:
        assert option.replace("-", "\\-") not in pages["slurm-qpu-jobs.1"]


def test_defaults_are_shown_as_argparse_expands_them(pages: dict[str, str]) -> None:
    broker = pages["slurm-qpu-broker.1"]
    assert "(default 8291)" in flat(broker)  # help "port (default %(default)s)"
    assert "%(default)" not in broker
    assert "(default: /etc/slurm/qrmi_config.json)" in flat(pages["slurm-qpu-list.1"])


def test_a_documented_exit_status_gets_its_own_section(pages: dict[str, str]) -> None:
    run = pages["slurm-qpu-run.1"]
    exit_section = run.split('.SH "EXIT STATUS"')[1].split(".SH")[0]
    assert "143 on SIGTERM" in exit_section
    assert "Exit status:" not in run


def test_main_page_has_the_sections_and_files_of_the_packages(pages: dict[str, str]) -> None:
    page = pages["slurm-qpu.1"]
    for title in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS",
                  "ENVIRONMENT", "FILES", "SEE ALSO"):
        assert f'.SH "{title}"' in page
    files = tags(page, "FILES")
    for path in ("/etc/slurm-qpu/plugstack.conf", "/etc/slurm/qrmi_config.json",
                 "/etc/slurm/qpu_names.json", "/etc/slurm-qpu/qrmi_config.json",
                 "/var/lib/slurm-qpu", "/var/lib/slurm-qpu-broker/journal.sqlite"):
        assert path in files
    see_also = plain(page.split('.SH "SEE ALSO"')[1])
    for ref in ("spank_qpu(8)", "sbatch(1)", "slurm.conf(5)"):
        assert ref in see_also


def test_extras_name_only_existing_sub_commands() -> None:
    # and the emulator, a command of its own whose page is written apart
    assert set(manpages.EXTRAS) <= {c.path[0] for c in manpages.commands(build_parser())} | {
        "emulator"}


def test_roff_escaping_of_leading_dots_backslashes_and_hyphens() -> None:
    assert manpages.line(manpages.esc(".hidden")) == "\\&.hidden"
    assert manpages.line(manpages.esc("'quoted'")) == "\\&'quoted'"
    assert manpages.esc("a\\b --opt") == "a\\eb \\-\\-opt"
    assert manpages.esc("caf\u00e9") == "caf\\[u00E9]"
    assert manpages.arg('say "hi"') == '"say \\(dqhi\\(dq"'
    text = manpages.raw("intro\n.starts with a dot\n  'indented\n")
    assert "\\&.starts with a dot" in text
    assert "\\&'indented" in text


def test_generated_pages_have_no_groff_warnings(tmp_path: Path) -> None:
    written = manpages.write(tmp_path) + manpages.write(tmp_path, manpages.emulator_pages())
    assert len(written) >= 11
    for path in written:
        assert groff_warnings(path) == "", path.name


def test_the_generator_is_deterministic(tmp_path: Path) -> None:
    outputs = []
    for seed, columns in (("1", "40"), ("2", "200")):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed, "COLUMNS": columns}
        env.pop("SOURCE_DATE_EPOCH", None)
        for emulator in ([], ["--emulator"]):
            subprocess.run([sys.executable, str(Path(manpages.__file__)), "--out", str(out),
                            *emulator], check=True, env=env, capture_output=True)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) >= 11


def test_source_date_epoch_sets_the_date_and_the_version_is_the_package_s(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01 00:00 UTC
    page = manpages.pages()["slurm-qpu.1"]
    assert f'.TH "SLURM\\-QPU" 1 "2026\\-01\\-01" "slurm\\-qpu {__version__}"' in page
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert '.TH "SLURM\\-QPU" 1 ""' in manpages.pages()["slurm-qpu.1"]


def test_stale_pages_of_removed_sub_commands_are_deleted(tmp_path: Path) -> None:
    (tmp_path / "slurm-qpu-gone.1").write_text(".TH GONE 1\n")
    (tmp_path / "other.1").write_text(".TH OTHER 1\n")
    manpages.write(tmp_path)
    assert not (tmp_path / "slurm-qpu-gone.1").exists()
    assert (tmp_path / "other.1").exists()


# ---------------------------------------------------------------- spank_qpu(8)


def shim_keys() -> set[str]:
    source = (REPO / "shim" / "args.c").read_text()
    keys = set(re.findall(r'take\(av\[i\],\s*"(\w+)"', source))
    keys |= set(re.findall(r'strncmp\(av\[i\],\s*"(\w+)="', source))
    return keys


def settings_keys() -> set[str]:
    """Every key settings.parse_args compares ``key`` with, and the --env: prefix."""
    tree = ast.parse(Path(settings.__file__).read_text())
    keys = set(settings.SHIM_KEYS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) \
                and node.left.id == "key":
            for right in node.comparators:
                values = right.elts if isinstance(right, ast.Tuple) else [right]
                keys |= {v.value for v in values
                         if isinstance(v, ast.Constant) and isinstance(v.value, str)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "startswith" and ast.unparse(node.func.value) == "arg" \
                and node.args and isinstance(node.args[0], ast.Constant):
            keys.add(str(node.args[0].value))  # arg.startswith("--env:")
    return keys


def test_the_key_lists_come_from_the_source() -> None:
    assert {"venv", "pyhome", "pythonpath", "pytrace", "state_dir", "module",
            "broker"} <= shim_keys()
    assert {"config", "names", "broker", "broker_timeout", "state_dir", "log_level",
            "log_json", "peer_timeout", "scontrol", "squeue", "sacctmgr", "profile",
            "--env:"} <= settings_keys()


def test_every_plugstack_argument_is_documented_in_spank_qpu_8() -> None:
    documented = {re.split(r"[=:]", tag)[0]
                  for entry in tags(SPANK_PAGE.read_text(), "CONFIGURATION")
                  for tag in entry.split(", ")}
    missing = sorted(k.rstrip(":") for k in shim_keys() | settings_keys()
                     if k.rstrip(":") not in documented)
    assert missing == [], f"plugstack arguments missing from man/spank_qpu.8: {missing}"
    assert "CONFIG" in documented  # the bare first argument, as spank_qrmi


def contract_variables() -> set[str]:
    """What jobenv.contract.build() forces into a job's tasks, per-QPU names as NAME_<KEY>,
    and every variable-like string constant of the module (for branches not taken here)."""
    qpu = ResourceDef(name="qpu0", type="local-simulator", environment={})
    forced = build([Acquired(qpu, "token")], job_id=1, uid=1000, time_limit_seconds=60,
                   request="qpu0").forced
    names = {("NAME_" + k[len("qpu0_"):]) if k.startswith("qpu0_") else k for k in forced}
    tree = ast.parse((REPO / "src" / "slurm_qpu" / "jobenv" / "variables.py").read_text())
    constants = {n.value for n in ast.walk(tree)
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)
                 and re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+", n.value)}
    task = (REPO / "src" / "slurm_qpu" / "spank" / "task.py").read_text()
    literal = set(re.findall(r'host\.setenv\("([A-Z_]+)"', task))
    return names | constants | literal


def test_every_job_environment_variable_is_documented_in_spank_qpu_8() -> None:
    variables = contract_variables()
    assert {"QRMI_JOB_QPU_RESOURCES", "SLURM_JOB_QPU_TYPES", "SLURM_QPU_REQUEST",
            "NAME_QRMI_JOB_ACQUISITION_TOKEN", "RUST_LOG"} <= variables
    documented = {name for entry in tags(SPANK_PAGE.read_text(), "ENVIRONMENT")
                  for name in entry.split(", ")}
    missing = sorted(v for v in variables
                     if v not in documented and "NAME_" + v not in documented)
    assert missing == [], f"job variables missing from man/spank_qpu.8: {missing}"


def test_every_user_override_and_selection_key_is_documented_in_spank_qpu_8() -> None:
    page = SPANK_PAGE.read_text()
    documented = {name for entry in tags(page) for name in entry.split(", ")}
    for allowed in [a for v in vendors().values() for a in v.overrides]:
        assert "NAME_" + allowed.key in documented
    selection_tags = {re.split(r"[=|]", t)[0] for t in tags(page, "QPU SELECTION")}
    assert set(selection.KEYS) <= selection_tags


def test_spank_qpu_8_has_no_groff_warnings_and_the_package_version() -> None:
    assert groff_warnings(SPANK_PAGE) == ""
    th = next(x for x in SPANK_PAGE.read_text().splitlines() if x.startswith(".TH"))
    assert f'"slurm\\-qpu {__version__}"' in th


def test_spank_qpu_8_shows_the_packaged_plugstack_line_and_the_examples() -> None:
    text = plain(SPANK_PAGE.read_text())
    assert "required spank_qpu.so /etc/slurm/qrmi_config.json " \
           "venv=/usr/lib/slurm-qpu/venv broker=http://HOST:8291" in text
    assert "sbatch --qpu=ibm_kingston job.sh" in text
    assert "$ slurm-qpu list" in text
    for ref in ("slurm-qpu(1)", "sbatch(1)", "spank(7)", "slurm.conf(5)"):
        assert ref in text
