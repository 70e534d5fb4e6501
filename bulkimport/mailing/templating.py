"""Rendering notification e-mails that administrators may edit, with a sandboxed Jinja2
environment: an editor must never be able to break sending, read secrets or run code.

Templates are never rendered by Flask's own environment (which exposes `config`, and with it the
secret key). Here the environment is immutable and sandboxed, undefined names are errors, there
is no loader (so no include/extends/import) and no globals (no range, lipsum, cycler, namespace);
only the documented variables are passed. Filters are an allow-list, and string methods too.
Every render has a budget: values built with `*`, `**`, `+` and `~` are refused before they
exceed MAX_OUTPUT_CHARS, loops may run MAX_ITERATIONS times in all, every printed value counts
against MAX_WORK_CHARS, and a render that passes RENDER_SECONDS stops. `check_template` refuses
at save time what would fail at send time.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_eval_context
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

INVITATION = "panels.peopleadmin_edituser.new_user_email_notification"
MAX_OUTPUT_CHARS = 100_000


@dataclass(frozen=True)
class NotificationTemplate:
    """The three parts of a notification e-mail, as Jinja2 source."""

    subject: str
    html: str
    text: str


DEFAULT_INVITATION = NotificationTemplate(
    subject="Your {{ site_name }} account",
    text="""Hello {{ firstname }},

An account has been created for you on {{ site_name }}.

    Username: {{ username }}
    Password: {{ password }}

Log in at {{ login_url }}

This password works until {{ expires }}.{% if must_change_password %}
You will be asked to choose a new password when you first log in.{% endif %}

If you did not expect this e-mail, tell your administrator.
""",
    html="""<!doctype html>
<html lang="en"><body style="font-family: sans-serif; line-height: 1.5">
<p>Hello {{ firstname }},</p>
<p>An account has been created for you on <strong>{{ site_name }}</strong>.</p>
<table style="border-collapse: collapse">
  <tr><td style="padding: 2px 12px 2px 0">Username</td><td><code>{{ username }}</code></td></tr>
  <tr><td style="padding: 2px 12px 2px 0">Password</td><td><code>{{ password }}</code></td></tr>
</table>
<p><a href="{{ login_url }}">Log in to {{ site_name }}</a></p>
<p>This password works until {{ expires }}.{% if must_change_password %}
You will be asked to choose a new password when you first log in.{% endif %}</p>
<p style="color: #666">If you did not expect this e-mail, tell your administrator.</p>
</body></html>
""",
)


class RenderError(Exception):
    """A template could not be rendered; the message says which part and why."""


MAX_EXPONENT = 64
MAX_ITERATIONS = 1_000  # the invitation's variables are short strings: no e-mail needs more
MAX_WORK_CHARS = 1_000_000  # printed characters, including those captured by set and macros
RENDER_SECONDS = 1.0
MAX_SOURCE_CHARS = 50_000
# Filters the guard inserts; their names are not identifiers, so a template cannot use them.
GUARD_FILTER, CONCAT_FILTER = "bulkimport:guarded_iter", "bulkimport:capped_concat"

# str methods a template may call: none of them can build a value longer than its input.
SAFE_STR_METHODS = frozenset({
    "upper", "lower", "title", "capitalize", "casefold", "strip", "lstrip", "rstrip",
    "startswith", "endswith", "split", "isdigit", "isalpha", "isalnum", "isupper", "islower",
    "count", "find"})


@dataclass
class _Budget:
    deadline: float
    iterations: int = 0
    work: int = 0

    def spend(self, iterations: int = 0, chars: int = 0) -> None:
        self.iterations += iterations
        self.work += chars
        if self.iterations > MAX_ITERATIONS:
            raise RenderError(f"the loops run more than {MAX_ITERATIONS} times")
        if self.work > MAX_WORK_CHARS:
            raise RenderError(f"the template produces more than {MAX_WORK_CHARS} characters")
        if time.monotonic() > self.deadline:
            raise RenderError(f"rendering takes longer than {RENDER_SECONDS:g} s")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _spend(iterations: int = 0, chars: int = 0) -> None:
    budget = _budget.get()
    if budget is None:
        raise RenderError("templates are rendered only through render()")
    budget.spend(iterations, chars)


def _check_size(value):
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")
    return value


def _guarded_iter(iterable):
    """Every loop of a template iterates through this: each step is paid from the budget."""
    for item in iterable:
        _spend(iterations=1)
        yield item


def _finalize(value):
    """Every printed value passes here (also inside set blocks and macros): pay for it."""
    if value is not None and not isinstance(value, (bool, int, float)):
        _spend(chars=len(str(value)))
    return value


@pass_eval_context
def _capped_concat(eval_ctx, items):
    """`a ~ b`, escaping like Jinja's own concatenation, refused when too large."""
    return _check_size((markup_join if eval_ctx.autoescape else str_join)(items))


def _safe_replace(value, old, new, count=None):
    value, old, new = str(value), str(old), str(new)
    times = value.count(old) if old else len(value) + 1
    if count is not None:
        times = min(times, int(count))
    if len(value) + times * max(len(new) - len(old), 0) > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")
    return value.replace(old, new, -1 if count is None else int(count))


def _safe_join(value, separator=""):
    items = [str(item) for item in value]
    if sum(map(len, items)) + len(separator) * max(len(items) - 1, 0) > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")
    return separator.join(items)


class _CappedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, refusing to build huge values (`'a' * 10**8`, `9**9**9`, repeated `~`)
    before they exist, and making every loop and printed value pay from the render's budget.
    Jinja calls `call_binop` only for the operators listed in `intercepted_binops`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context, operator, left, right):
        """Apply `operator`, unless its result would be too large to be useful in an e-mail."""
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise RenderError(f"exponents above {MAX_EXPONENT} are not allowed")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (isinstance(sequence, (str, list, tuple)) and isinstance(times, int)
                        and len(sequence) * times > MAX_OUTPUT_CHARS):
                    raise RenderError("the template builds a value that is too large")
        if operator == "%" and isinstance(left, str):
            raise RenderError("% formatting of text is not available; join text with ~")
        if operator == "+" and isinstance(left, (str, list, tuple)) \
                and isinstance(right, (str, list, tuple)) \
                and len(left) + len(right) > MAX_OUTPUT_CHARS:
            raise RenderError("the template builds a value that is too large")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj, attribute):
        """Strings offer only methods that cannot build large values (not even the sandbox's
        own `format`, whose padding can); the rest as the sandbox decides."""
        if isinstance(obj, str) and attribute not in SAFE_STR_METHODS:
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        """`text['format']` is `text.format`: the same rule as `getattr`."""
        if isinstance(obj, str) and isinstance(argument, str) \
                and argument not in SAFE_STR_METHODS:
            return self.unsafe_undefined(obj, argument)
        return super().getitem(obj, argument)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's signature)
        """Every call (macros included) checks the render's deadline."""
        _spend()
        return super().call(__context, __obj, *args, **kwargs)

    def _parse(self, source, name, filename):
        """Parse, then route every loop through the budget and every `~` through the cap."""
        return _Guard().visit(super()._parse(source, name, filename))


class _Guard(NodeTransformer):
    """Rewrites a parsed template so that loops pay from the budget and `~` is capped."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        """`for x in items` loops over the items through the budget's guard."""
        if node.recursive:  # a recursive loop's inner calls would bypass the guard
            raise TemplateSyntaxError("recursive loops are not available", node.lineno)
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, GUARD_FILTER, [], [], None, None,
                                 lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        """`a ~ b` becomes a capped join of `[a, b]`."""
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), CONCAT_FILTER, [], [],
                            None, None, lineno=node.lineno)


def _check_size_filter(function):
    def checked(*args, **kwargs):
        return _check_size(function(*args, **kwargs))
    return checked


ALLOWED_FILTERS = ("upper", "lower", "title", "capitalize", "trim", "default", "d", "escape",
                   "e", "length", "count", "first", "last", "truncate", "wordcount",
                   "striptags", "int", "string", "abs", "round", "urlencode")


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = _CappedSandbox(undefined=StrictUndefined, autoescape=autoescape, loader=None,
                         finalize=_finalize)
    env.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict
    builtin = env.filters
    env.filters = {name: _check_size_filter(builtin[name]) for name in ALLOWED_FILTERS}
    for name, function in (("replace", _safe_replace), ("join", _safe_join)):
        env.filters[name] = function
    env.filters[GUARD_FILTER] = _guarded_iter
    env.filters[CONCAT_FILTER] = _capped_concat
    return env


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


# The variables of the invitation template, with the one line the editor shows for each.
INVITATION_VARIABLES: dict[str, str] = {
    "username": "The user's username, to log in with.",
    "firstname": "The user's first name.",
    "surname": "The user's surname.",
    "email": "The user's e-mail address (where this e-mail goes).",
    "language": "The user's language code (e.g. en), empty if none.",
    "password": "The generated password: it is in this e-mail only, never stored in clear.",
    "login_url": "The address of the login page.",
    "site_name": "The site's name (BULKIMPORT_SITE_NAME).",
    "expires": "When the password stops working, e.g. 2026-12-02 09:30 UTC.",
    "must_change_password": "True when the user must choose a new password at first login.",
}
FORBIDDEN_TAGS = {nodes.Include: "include", nodes.Extends: "extends", nodes.Import: "import",
                  nodes.FromImport: "from … import"}
PARTS = (("subject", "subject", False), ("html", "HTML body", True), ("text", "text body", False))


def invitation_context(*, username: str, firstname: str, surname: str, email: str,
                       language: str | None, password: str, login_url: str, site_name: str,
                       expires: datetime, must_change_password: bool) -> dict:
    """The documented variables of the invitation template, and nothing else."""
    return {
        "username": username, "firstname": firstname, "surname": surname, "email": email,
        "language": language or "", "password": password, "login_url": login_url,
        "site_name": site_name, "expires": expires.strftime("%Y-%m-%d %H:%M UTC"),
        "must_change_password": must_change_password,
    }


SAMPLE_PASSWORD = "Sample-Password-7x4Q"


def sample_context(*, language: str, login_url: str, site_name: str, days: int,
                   must_change_password: bool = True, **person: str) -> dict:
    """Sample data for previews and the test render at save: Jane Doe unless `person` (username,
    firstname, surname, email) says otherwise."""
    details = {"username": "jdoe", "firstname": "Jane", "surname": "Doe",
               "email": "jane.doe@example.com", **person}
    return invitation_context(
        **details, language=language, password=SAMPLE_PASSWORD, login_url=login_url,
        site_name=site_name, expires=datetime.now() + timedelta(days=days),
        must_change_password=must_change_password)


def longest_context(context: dict, length: int = 254) -> dict:
    """`context` with every text variable as long as a user's value can be, for the test render
    that proves a template stays within its budget for every user."""
    return {name: ("W" * length if isinstance(value, str) else value)
            for name, value in context.items()}


def render(template: NotificationTemplate, context: dict) -> tuple[str, str, str]:
    """Render subject, HTML and text within one budget; raises RenderError naming the part
    that failed."""
    token = _budget.set(_Budget(deadline=time.monotonic() + RENDER_SECONDS))
    try:
        parts = []
        for field, name, html in PARTS:
            source = getattr(template, field)
            try:
                output = _capped_render(_compiled(source, html), context)
            except RenderError as exc:
                raise RenderError(f"{name}: {exc}") from None
            except Exception as exc:  # syntax errors, undefined names, sandbox refusals
                raise RenderError(f"{name}: {exc.__class__.__name__}: {exc}") from None
            parts.append(output)
    finally:
        _budget.reset(token)
    subject = " ".join(parts[0].split())  # one line: no header injection through the subject
    return subject, parts[1], parts[2]


def check_template(template: NotificationTemplate, sample: dict,
                   variables: dict[str, str]) -> list[str]:
    """Every reason not to store `template`, each naming the part (and line, for syntax):
    syntax errors, forbidden tags, unknown variables, then a failing test render with `sample`
    and with the longest values a user can have (so that what passes here renders for every
    user). An empty list means it is safe to save."""
    problems = []
    for field, name, html in PARTS:
        source = getattr(template, field)
        if len(source) > MAX_SOURCE_CHARS:
            problems.append(f"{name}: longer than {MAX_SOURCE_CHARS} characters.")
            continue
        env = _HTML if html else _TEXT
        try:
            tree = env.parse(source)
            env.compile(source)  # the guard's own refusals (recursive loops)
        except TemplateSyntaxError as exc:
            problems.append(f"{name}, line {exc.lineno}: {exc.message}")
            continue
        for node_type, tag in FORBIDDEN_TAGS.items():
            for node in tree.find_all(node_type):
                problems.append(f"{name}, line {node.lineno}: “{tag}” is not allowed in "
                                "notification templates.")
        unknown = _unknown_names(tree, variables)
        for variable, line in unknown:
            problems.append(f"{name}, line {line}: unknown variable “{variable}”; the variables "
                            f"are {', '.join(variables)}.")
    if problems:
        return problems
    for what, context in (("sample data", sample),
                          ("the longest values a user can have", longest_context(sample))):
        try:
            render(template, context)
        except RenderError as exc:
            return [f"The test render with {what} failed: {exc}"]
    return []


def _unknown_names(tree: nodes.Template, variables: dict[str, str]) -> list[tuple[str, int]]:
    """(name, line) of each name the template reads that is neither a documented variable nor
    set by the template itself (`self`, which Jinja always resolves, counts as unknown)."""
    unknown = (meta.find_undeclared_variables(tree) | {"self"}) - set(variables)
    found: dict[str, int] = {}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name in unknown:
            found.setdefault(name.name, name.lineno)
    return list(found.items())


@lru_cache(maxsize=256)
def _compiled(source: str, html: bool):
    """The compiled template (compiling takes ~2 ms an e-mail; rendering ~0.02 ms)."""
    return (_HTML if html else _TEXT).from_string(source)


def _capped_render(template, context: dict) -> str:
    """Render piece by piece, stopping as soon as the output passes MAX_OUTPUT_CHARS."""
    pieces, size = [], 0
    for piece in template.generate(context):
        size += len(piece)
        if size > MAX_OUTPUT_CHARS:
            raise RenderError(f"the output is longer than {MAX_OUTPUT_CHARS} characters")
        pieces.append(piece)
    return "".join(pieces)
