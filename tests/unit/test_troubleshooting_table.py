"""docs/troubleshooting.md names every error message a user or an administrator can see.

The messages are enumerated from the source tree, not from a list kept by hand, so a new
message without a row in the table fails this test:

* Python (``src/slurm_qpu/**/*.py`` and the emulator's ``emulator/slurm_qpu_emulator/``),
  with ``ast``:
  - ``raise X(...)`` (any exception but the programming errors AttributeError, KeyError,
    TypeError, IndexError, NotImplementedError, AssertionError), ``raise SystemExit(...)``;
  - calls of a method named ``error``, ``warning``, ``exception`` or ``critical``: the
    loggers (the plugin's land in slurmd's log through ``route_to_slurm``, prefixed
    ``qpu:``; the broker's in its journal), ``parser.error``, the broker's HTTP error
    answer ``ex.error(status, message)``, ``slurm-qpu run``'s ``out.error``;
  - ``host.log(level, message)``: the plugin's direct line to Slurm's log and the user's
    terminal (``_spank.log``);
  - ``print(..., file=sys.stderr)``: the command line's errors;
  - the broker proxy's refusals ``deny(...)`` / ``denied(...)`` (HTTP error bodies), and
    ``Problem(file, message)`` (``slurm-qpu config check``);
  - messages stored for later display: keyword arguments ``error=``, ``message=``,
    ``reason=``; assignments to ``.error``, ``.status_reason``, ``.reason``,
    ``msg``/``message``; ``.append(...)`` to a list whose name says errors, refusals,
    problems or warnings; the strings returned by the reason functions ``refusal`` and
    ``check``; both sides of ``a if c else b`` and every operand of ``a or b``.
* C (``shim/*.c``): ``slurm_error("...")`` and ``slurm_info("...")`` format strings
  (adjacent string literals joined).
* Lua (``src/slurm_qpu/data/job_submit.lua``): ``slurm.log_user``, ``slurm.log_info``,
  ``slurm.log_error`` and ``string.format`` format strings.

Left out: ``lab/slurm_qpu_lab/`` (the developers' test cluster, not something a site
runs, and outside both trees) and the emulator's modules that imitate a vendor's API
answers (``ibm_runtime``, ``ibm_system``, ``pasqal``, ``iam``, ``s3``, ``primitives``,
``tokens``): their messages
are the vendor's words, which reach a user as ``<vendor message>`` and are covered by the
vendor-message rows. The emulator's
command line and its ``/_emulator`` control API are in.

Which text of a message must be in the table: a message is its literal text with a
placeholder for every interpolated value (f-string fields, ``%s``-style conversions,
concatenated names), cut into literal *runs* at the placeholders, whitespace collapsed.
Its *keys* are the leading run (the text before the first placeholder) and the longest
run, each only when it is at least 12 characters long: a message that starts with a
name (``resource {name}: setting {key} is missing ...``) is found by its longest run, and
one whose leading run is generic (``availability: {qpu} is unavailable ...``) must show
its specific part too. A message without a run of 12 characters (pure placeholders such
as ``f"{prog}: {exc}"``, which wraps a message enumerated where it is raised, or a word
or two around names) is skipped. Only text containing a space counts as a message
(``"InvalidAccessKeyId"`` is an S3 error code, not a message). The table may cover a
family of messages in one row; every key must appear somewhere in
docs/troubleshooting.md, whitespace collapsed (Markdown's ``\\|`` read as ``|``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "slurm_qpu"
EMULATOR = REPO / "emulator" / "slurm_qpu_emulator"
TABLE = REPO / "docs" / "troubleshooting.md"
MIN_KEY = 12
PLACEHOLDER = "\x00"

SKIPPED_DIRS = {"__pycache__"}
EMULATED_VENDOR_APIS = {"ibm_runtime.py", "ibm_system.py", "pasqal.py", "iam.py", "s3.py",
                        "primitives.py", "tokens.py"}
PROGRAMMING_ERRORS = {"AttributeError", "KeyError", "TypeError", "IndexError",
                      "NotImplementedError", "AssertionError"}
LOG_METHODS = {"error", "warning", "exception", "critical"}
REFUSALS = {"deny", "denied"}
MESSAGE_KEYWORDS = {"error", "message", "reason"}
MESSAGE_ATTRIBUTES = {"error", "status_reason", "reason"}
MESSAGE_VARIABLES = {"msg", "message"}
REASON_FUNCTIONS = {"refusal", "check"}
LIST_WORDS = ("error", "refused", "problem", "warning")
PERCENT = re.compile(r"%(?:\([a-z_]+\))?[-+ #0]*\d*(?:\.\d+)?[a-zA-Z]")


@dataclass(frozen=True)
class Message:
    where: str  # file:line
    text: str  # the literal text, PLACEHOLDER where a value goes

    @property
    def keys(self) -> tuple[str, ...]:
        """What the table must contain: the leading literal run and the longest one, each
        when it is at least MIN_KEY characters long (empty: nothing to look for)."""
        runs = [" ".join(run.split()) for run in self.text.split(PLACEHOLDER)]
        found = [run for run in (runs[0], max(runs, key=len)) if len(run) >= MIN_KEY]
        return tuple(dict.fromkeys(found))


# ------------------------------------------------------------------------------ Python

def _text(node: ast.AST | None, percent: bool = False) -> str | None:
    """The literal text of a message expression, placeholders for its values (None: the
    expression holds no literal text)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        value = node.value
        return PERCENT.sub(PLACEHOLDER, value).replace("%%", "%") if percent else value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else PLACEHOLDER
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, percent), _text(node.right, percent)
        if left is None and right is None:
            return None
        return (left if left is not None else PLACEHOLDER) + \
            (right if right is not None else PLACEHOLDER)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):  # "..." % (...)
        return _text(node.left, percent=True)
    return None


def _texts(node: ast.AST | None, percent: bool = False) -> list[str | None]:
    """The messages an expression may give: both sides of ``a if c else b`` and every
    operand of ``a or b``."""
    if isinstance(node, ast.IfExp):
        return _texts(node.body, percent) + _texts(node.orelse, percent)
    if isinstance(node, ast.BoolOp):
        return [t for value in node.values for t in _texts(value, percent)]
    return [_text(node, percent)]


def _is_message(text: str | None) -> bool:
    return text is not None and " " in text.replace(PLACEHOLDER, "")


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):  # raise type(exc)(...)
        return _name(node.func)
    return ""


def _receiver(node: ast.AST) -> str:
    return _name(node.value) if isinstance(node, ast.Attribute) else ""


def _call_messages(call: ast.Call, raised: bool) -> list[str | None]:
    name = _name(call.func)
    args: list[ast.expr] = []
    percent = False
    if raised:
        if name in PROGRAMMING_ERRORS:
            return []
        args = list(call.args)
    elif name in LOG_METHODS:
        args, percent = call.args[:2], True
    elif name == "log" and _receiver(call.func) == "host":
        args = call.args[1:2]
    elif name in REFUSALS or (name == "print" and any(
            k.arg == "file" and ast.unparse(k.value) == "sys.stderr" for k in call.keywords)):
        args = call.args[:1]
    elif name == "Problem":
        args = call.args[1:2]
    elif name == "append" and any(w in _receiver(call.func).lower() for w in LIST_WORDS):
        args = call.args[:1]
    else:
        args = [k.value for k in call.keywords if k.arg in MESSAGE_KEYWORDS]
    return [t for a in args for t in _texts(a, percent)]


def python_messages(path: Path) -> list[Message]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    raised = {id(n.exc) for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc}
    found: list[tuple[int, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found += [(node.lineno, t) for t in _call_messages(node, id(node) in raised)]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any((isinstance(t, ast.Attribute) and t.attr in MESSAGE_ATTRIBUTES)
                   or (isinstance(t, ast.Name) and t.id in MESSAGE_VARIABLES)
                   for t in targets):
                found += [(node.lineno, t) for t in _texts(node.value)]
        elif isinstance(node, ast.FunctionDef) and node.name in REASON_FUNCTIONS:
            found += [(r.lineno, t) for r in ast.walk(node) if isinstance(r, ast.Return)
                      for t in _texts(r.value)]
    return [Message(f"{where}:{line}", text) for line, text in found if _is_message(text)]


# ------------------------------------------------------------------------------ C and Lua

C_CALL = re.compile(r"\bslurm_(?:error|info)\s*\(((?:\s*\"(?:[^\"\\]|\\.)*\")+)")
LUA_CALL = re.compile(r"\b(?:slurm\.log_(?:user|info|error)|string\.format)\s*\(\s*"
                      r"\"((?:[^\"\\]|\\.)*)\"")
C_STRING = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")


def _format_text(literal: str) -> str:
    return PERCENT.sub(PLACEHOLDER, literal).replace("%%", "%").replace('\\"', '"')


def c_messages(path: Path) -> list[Message]:
    source = path.read_text(encoding="utf-8")
    out = []
    for m in C_CALL.finditer(source):
        literal = "".join(C_STRING.findall(m.group(1)))
        line = source.count("\n", 0, m.start()) + 1
        out.append(Message(f"{path.relative_to(REPO)}:{line}", _format_text(literal)))
    return [m for m in out if _is_message(m.text)]


def lua_messages(path: Path) -> list[Message]:
    source = path.read_text(encoding="utf-8")
    out = [Message(f"{path.relative_to(REPO)}:{source.count(chr(10), 0, m.start()) + 1}",
                   _format_text(m.group(1))) for m in LUA_CALL.finditer(source)]
    return [m for m in out if _is_message(m.text)]


# ------------------------------------------------------------------------------ the check

def source_files() -> list[Path]:
    files = []
    for tree in (SRC, EMULATOR):
        for path in sorted(tree.rglob("*.py")):
            if set(path.relative_to(tree).parts) & SKIPPED_DIRS:
                continue
            if tree is EMULATOR and path.name in EMULATED_VENDOR_APIS:
                continue
            files.append(path)
    return files


def user_visible_messages() -> list[Message]:
    """Every message of the source tree a user or an administrator can see."""
    messages: list[Message] = []
    for path in source_files():
        messages += python_messages(path)
    for path in sorted((REPO / "shim").glob("*.c")):
        messages += c_messages(path)
    messages += lua_messages(SRC / "data" / "job_submit.lua")
    return messages


def normalised(text: str) -> str:
    return " ".join(text.replace("\\|", "|").split())


def missing_from(doc: str, messages: list[Message]) -> list[Message]:
    """The messages whose key the document does not contain."""
    text = normalised(doc)
    return [m for m in messages if any(key not in text for key in m.keys)]


def test_the_enumeration_finds_the_messages_of_every_component() -> None:
    messages = user_visible_messages()
    keys = {key for m in messages for key in m.keys}
    for expected in (
        "unknown QPU name(s)",  # submit time (names.py)
        "cannot acquire QPU",  # prolog (lease/from_vendors.py)
        "no word from the job's first node after",  # multi-node prolog (lease/coordination.py)
        "no QPU lease for this job on",  # task_init (spank/task.py)
        "missing, unknown or expired job token (a job's token stops working when the job "
        "ends)",  # the broker's proxy (an HTTP error body)
        "the slurm-qpu broker at",  # the prolog's broker client
        ") and holds QPU credentials; run: chmod 600",  # the broker's start-up
        "required field is missing",  # slurm-qpu config check
        "qpu: cannot start Python (home",  # the C shim
        ": the job's QPU licenses come with --qpu and stay (",  # job_submit.lua
        "slurm-qpu-emulator: cannot listen on",  # the emulator
    ):
        assert expected in keys, expected
    assert len(messages) > 300


def test_every_message_is_in_the_troubleshooting_table() -> None:
    doc = TABLE.read_text(encoding="utf-8")
    missing = missing_from(doc, user_visible_messages())
    listing = "\n".join(f"  {m.where}: {key!r}" for m in missing for key in m.keys
                        if key not in normalised(doc))
    assert not missing, f"{len(missing)} message(s) not in {TABLE.name}:\n{listing}"


def test_a_message_not_in_the_table_is_reported() -> None:
    made_up = Message("made/up.py:1",
                      f"the flux capacitor of {PLACEHOLDER} is out of phase with the warp core")
    short = Message("made/up.py:2", f"{PLACEHOLDER}: {PLACEHOLDER}")
    assert made_up.keys == ("the flux capacitor of", "is out of phase with the warp core")
    doc = TABLE.read_text(encoding="utf-8")
    assert missing_from(doc, [made_up, short]) == [made_up]
    # both its leading run and its longest run must be there, whatever the spacing
    assert missing_from(doc + "\n| `the flux  capacitor of <x>` |", [made_up]) == [made_up]
    assert missing_from(doc + "\n| `the flux\ncapacitor of <x> is out of phase with the warp "
                        "core` |", [made_up]) == []


@pytest.mark.parametrize(("source", "keys"), [
    ('raise ValueError(f"resource {name}: setting {key} is missing from its config")',
     [(" is missing from its config".strip(),)]),
    ('log.warning("job %s: cannot read its time limit (%s); using %d s", job, exc, 60)',
     [(": cannot read its time limit (",)]),
    ('host.log(0, f"--qpu: {exc}")', [()]),
    ('raise Refused(403, f"job {job} did not request QPU {name} (it holds {held})")',
     [("did not request QPU",)]),
    ('raise StorageRefused(403, "InvalidAccessKeyId", f"S3 access key {k} is not ours")',
     [("S3 access key",)]),
    ('log.error("availability: %s is back but its reservation %s stays: %s", a, b, c)',
     [("availability:", "is back but its reservation")]),
    ('status.reason = None if ok else (reason or "the vendor reports it unavailable")',
     [("the vendor reports it unavailable",)]),
    ('raise AttributeError(f"module {__name__!r} has no attribute {name!r}")', []),
    ('print(f"usage went fine: {n} rows")', []),
])
def test_message_keys(tmp_path: Path, source: str, keys: list[tuple[str, ...]]) -> None:
    module = tmp_path / "m.py"
    module.write_text(source + "\n")
    assert [m.keys for m in python_messages(module)] == keys
