"""The ban list, in one place: what a task may not use, checked statically on its AST and at run time.

Two checks read it (SPEC §3):
  * ``validate.static_check`` walks a program's AST for banned imports, names and attributes: cheap, and
    enough for honest mistakes, but blind to a program that spells a capability without naming it
    (``getattr(__builtins__, '__imp' + 'ort__')('o' + 's')``).
  * The sandbox's jailed child installs a PEP 578 audit hook (``_zygote.py``) before the task runs. It sees
    what the program *does*, however it got there: an audit event below ends the run with the typed verdict
    ``banned``. The hook is task hygiene, not the security boundary; the sandbox's process isolation is.

Events are CPython's audit events (https://docs.python.org/3/library/audit_events.html).
"""

from __future__ import annotations

import ast

# SPEC §3: the reference list, then ours. `posix`, `_posixsubprocess`, `_socket` and `_ctypes` are the C
# modules behind os, subprocess, socket and ctypes: importing them reaches the same capabilities.
BANNED_MODULES = frozenset(
    "logging random multiprocessing pebble subprocess threading datetime time hashlib hmac bcrypt calendar "
    "os sys shutil socket ctypes importlib posix _posixsubprocess _socket _ctypes".split()
)
BANNED_NAMES = frozenset({"open", "eval", "exec", "__import__", "input", "compile", "breakpoint", "globals", "vars"})
"""Builtins a task may not use (unless the program binds the name itself, e.g. ``def f(input)``)."""
BANNED_ATTRIBUTES = frozenset({"__subclasses__", "__globals__", "__builtins__", "__code__", "__import__"})

# Run time. An `import` event of a module whose top-level name is in BANNED_MODULES is banned too.
BANNED_EVENTS = frozenset({
    "open",                                                      # any file, by open(), io.open or os.open
    "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "os.kill", "os.killpg", "signal.pthread_kill",              # signals to any process
    "builtins.input", "builtins.breakpoint", "pdb.set_trace",
    "sys.addaudithook", "sys.settrace", "sys.setprofile",        # tampering with this very check
    "sys._current_frames", "sys._current_exceptions", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "marshal.load", "marshal.loads",                             # bytecode from data
})
"""Audit events that mean a banned capability whoever raises them."""
BANNED_EVENT_PREFIXES = ("os.", "socket.", "subprocess.", "shutil.", "ctypes.", "fcntl.", "mmap.", "pty.",
                         "syslog.", "resource.", "sqlite3.", "urllib.", "http.", "ftplib.", "smtplib.", "poplib.",
                         "imaplib.", "nntplib.", "telnetlib.", "webbrowser.", "glob.", "tempfile.", "winreg.",
                         "msvcrt.", "_winapi.")
"""Families of events, all banned: the filesystem and process calls of os, sockets, ctypes, and the like."""
TASK_BANNED_EVENTS = frozenset({
    "exec", "compile",                          # exec / eval / compile of strings (or code objects)
    "code.__new__", "function.__new__",         # building code or functions by hand
    "object.__getattr__",                       # code, frame and traceback internals (__code__, tb_frame, f_code…)
})
"""Audit events banned when the task's own code raises them. The standard library raises them too, legitimately
(namedtuple and dataclasses compile their methods with exec), so the hook looks at the frame that raised them."""


def banned_usage(tree: ast.AST) -> str | None:
    """The first banned import, attribute or unbound banned name in `tree` (a static check: blind to a
    capability spelled without its name, which the audit hook catches); None when there is none."""
    bound: set[str] = set()
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED_MODULES:
                    return f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in BANNED_MODULES:
                return f"from {node.module} import ..."
        elif isinstance(node, ast.Attribute) and node.attr in BANNED_ATTRIBUTES:
            return f"attribute {node.attr}"
        elif isinstance(node, ast.Name):
            (bound.add if isinstance(node.ctx, (ast.Store, ast.Del)) else used.append)(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
    for name in used:
        if (name in BANNED_NAMES or name in BANNED_MODULES) and name not in bound:
            return f"name {name}"
    return None
