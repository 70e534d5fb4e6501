"""Rendering notification e-mails that administrators may edit, with a sandboxed Jinja2
environment: an editor must never be able to break sending, read secrets or run code.

Templates are never rendered by Flask's own environment (which exposes `config`, and with it the
secret key). Here the environment is immutable and sandboxed, undefined names are errors, there
is no loader and no globals; only the documented variables are passed. A deadline checked between
statements cannot stop one long C-level computation (`(9**64)**64…`, `(0).to_bytes(10**8)`), so
the language itself is a small subset, checked whenever a part is parsed (save, preview, test
e-mail and the worker alike): no arithmetic, no macros, calls only of allowed text methods,
attributes only from a per-type allow-list, filters and tests from allow-lists, and limits on
source size, tokens and nesting. In that subset every operation takes time linear in values that
are capped in size, and every call, filter, test, comparison, loop step and printed value checks
the render's budget: RENDER_SECONDS of running time, MAX_ITERATIONS loop steps, MAX_WORK_CHARS
characters built or printed, MAX_OUTPUT_CHARS per value and per part.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, wraps

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes, pass_eval_context
from jinja2.parser import Parser
from jinja2.runtime import LoopContext, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import soft_str

from ..clock import utcnow
from ..site_time import zoned_text

INVITATION = "panels.peopleadmin_edituser.new_user_email_notification"
INVITATION_LINK = "panels.peopleadmin_edituser.new_user_set_password_link"
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


DEFAULT_INVITATION_LINK = NotificationTemplate(
    subject="Your {{ site_name }} account: choose your password",
    text="""Hello {{ firstname }},

An account has been created for you on {{ site_name }}.

    Username: {{ username }}

Choose your password here:
{{ set_password_url }}

This link works once, until {{ expires }}.
Once you have chosen your password you are logged in. Later, log in at {{ login_url }}

If you did not expect this e-mail, tell your administrator.
""",
    html="""<!doctype html>
<html lang="en"><body style="font-family: sans-serif; line-height: 1.5">
<p>Hello {{ firstname }},</p>
<p>An account has been created for you on <strong>{{ site_name }}</strong>.</p>
<table style="border-collapse: collapse">
  <tr><td style="padding: 2px 12px 2px 0">Username</td><td><code>{{ username }}</code></td></tr>
</table>
<p><a href="{{ set_password_url }}">Choose your password</a></p>
<p>This link works once, until {{ expires }}. Once you have chosen your password you are logged
in. Later, log in at <a href="{{ login_url }}">{{ login_url }}</a>.</p>
<p style="color: #666">If you did not expect this e-mail, tell your administrator.</p>
</body></html>
""",
)


class RenderError(Exception):
    """A template could not be rendered; the message says which part and why."""


class TemplateRefused(TemplateSyntaxError):
    """A template uses what notification templates may not: `problems` lists every (line,
    reason); the message is the first reason."""

    def __init__(self, problems: list[tuple[int, str]], name: str | None = None,
                 filename: str | None = None) -> None:
        line, message = problems[0]
        super().__init__(message, line, name, filename)
        self.problems = problems


MAX_SOURCE_CHARS = 50_000  # static text is cheap: a rich HTML e-mail fits
MAX_TOKENS = 1_000  # names, values, operators, tags and text runs of one part: compiling costs
MAX_DEPTH = 30  # nodes inside nodes; deeper trees overflow Jinja's recursive compiler
MAX_BLOCKS = 10  # tags inside tags; Python refuses code with 20 nested loops
MAX_ITERATIONS = 1_000  # the invitation's variables are short strings: no e-mail needs more
MAX_WORK_CHARS = 1_000_000  # characters built (`~`, filters, methods, slices) and printed
LIST_ITEM_CHARS = 16  # what one item of a built list costs from the work budget, beside its text
MAX_STRIP_CHARS = 32  # strip(chars) compares every stripped character with each of `chars`
RENDER_SECONDS = 0.5  # running time, after compiling (which MAX_TOKENS bounds)
# Filters the guard inserts; their names are not identifiers, so a template cannot use them.
GUARD_FILTER, CONCAT_FILTER = "bulkimport:guarded_iter", "bulkimport:capped_concat"
METER_FILTER, CHARGE_FILTER = "bulkimport:metered", "bulkimport:charged"

# The attributes a template may read, per type of value; every other type has none (numbers,
# booleans, lists). String methods are those that cannot build a value much longer than their
# input (not even the sandbox's own `format`, whose padding can) and take linear time.
SAFE_STR_METHODS = frozenset({
    "upper", "lower", "title", "capitalize", "casefold", "strip", "lstrip", "rstrip",
    "startswith", "endswith", "split", "isdigit", "isalpha", "isalnum", "isupper", "islower",
    "count", "find"})
LOOP_ATTRIBUTES = frozenset({"index", "index0", "revindex", "revindex0", "first", "last",
                             "length", "previtem", "nextitem"})
ALLOWED_ATTRIBUTES: dict[type, frozenset[str]] = {str: SAFE_STR_METHODS,
                                                  LoopContext: LOOP_ATTRIBUTES}
ALLOWED_FILTERS = ("upper", "lower", "title", "capitalize", "default", "d", "escape", "e",
                   "length", "count", "first", "last", "truncate", "wordcount", "striptags",
                   "int", "string", "urlencode")
# Filters and tests that never turn a list into text (join checks its items itself).
WHOLE_VALUE_FILTERS = frozenset({"default", "d", "length", "count", "first", "last", "int",
                                 "join"})
TEXT_TESTS = frozenset({"lower", "upper"})
ALLOWED_TESTS = ("defined", "undefined", "none", "true", "false", "boolean", "string", "number",
                 "integer", "lower", "upper", "eq", "equalto", "==", "ne", "!=", "lt", "<",
                 "le", "<=", "gt", ">", "ge", ">=", "in")

# The parts of Jinja a notification template may use. Everything else is refused when the
# template is parsed, on every path (save, preview, test e-mail, the worker), with its line.
ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.If,
    nodes.For, nodes.Assign, nodes.AssignBlock, nodes.With, nodes.FilterBlock, nodes.Tuple,
    nodes.List, nodes.CondExpr, nodes.Filter, nodes.Test, nodes.Call, nodes.Getitem,
    nodes.Getattr, nodes.Slice, nodes.Concat, nodes.Compare, nodes.Operand, nodes.And,
    nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Keyword)
FORBIDDEN_TAGS = {nodes.Include: "include", nodes.Extends: "extends", nodes.Import: "import",
                  nodes.FromImport: "from … import"}
REFUSED_NODES = {
    nodes.Macro: "“macro” is not available in notification templates.",
    nodes.CallBlock: "“call” is not available in notification templates.",
    nodes.Block: "“block” is not available in notification templates.",
    nodes.Dict: "dictionaries ({…}) are not available in notification templates.",
    nodes.NSRef: "namespace attributes are not available in notification templates.",
    nodes.EvalContextModifier: "“autoescape” is not available in notification templates.",
}
BLOCK_TAGS = (nodes.For, nodes.If, nodes.With, nodes.FilterBlock, nodes.AssignBlock)
ARITHMETIC = (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow)


@dataclass
class _Budget:
    """What one render (its three parts) has spent, and until when it may run."""

    deadline: float
    iterations: int = 0
    work: int = 0

    def spend(self, iterations: int = 0, chars: int = 0) -> None:
        """Pay for loop steps and characters, and stop the render when it is over budget."""
        self.iterations += iterations
        self.work += chars
        if self.iterations > MAX_ITERATIONS:
            raise RenderError(f"the loops run more than {MAX_ITERATIONS} times")
        if self.work > MAX_WORK_CHARS:
            raise RenderError(f"the template builds or prints more than {MAX_WORK_CHARS} "
                              "characters")
        if time.monotonic() > self.deadline:
            raise RenderError(f"rendering takes longer than {RENDER_SECONDS:g} s")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _spend(iterations: int = 0, chars: int = 0) -> None:
    # Outside render() there is no budget: this is also what stops Jinja from running filters
    # on constants at compile time, where no deadline holds.
    budget = _budget.get()
    if budget is None:
        raise RenderError("templates are rendered only through render()")
    budget.spend(iterations, chars)


def _check_size(value):
    """`value`, unless it is text or a list longer than MAX_OUTPUT_CHARS."""
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")
    return value


def _charge(value):
    """Refuse `value` when too large, else pay for it from the budget and return it: every
    value a template builds passes here, so that all it builds stays within MAX_WORK_CHARS."""
    _check_size(value)
    if isinstance(value, str):
        _spend(chars=len(value))
    elif isinstance(value, (list, tuple)):
        _spend(chars=sum(LIST_ITEM_CHARS + (len(item) if isinstance(item, str) else 0)
                         for item in value))
    else:
        _spend()
    return value


def _guarded_iter(iterable, static_chars: int = 0):
    """Every loop of a template iterates through this: each step is paid from the budget,
    with the static text of the loop's body that it prints."""
    for item in iterable:
        _spend(iterations=1, chars=static_chars)
        yield item


def _text_size(value) -> int:
    """At least len(str(value)), computed without building it: str() of a list repeats the text
    of every item (as repr, which escapes a character in up to ten)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return 2 + sum(4 + (10 * len(item) if isinstance(item, str) else _text_size(item))
                       for item in value)
    return 0  # numbers, booleans, None, undefined: short, or str() refuses them


def _check_text_size(value) -> None:
    """Refuse `value` before it is turned into text when that text would be too large (a list
    of 400 items of 65,000 characters is small; its text, 26 million characters, is not)."""
    if isinstance(value, (list, tuple)) and _text_size(value) > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")


def _finalize(value):
    """Every printed value passes here (also inside set blocks): pay for it."""
    if value is not None and not isinstance(value, (bool, int, float)):
        _check_text_size(value)
        _spend(chars=len(str(value)))
    return value


@pass_eval_context
def _capped_concat(eval_ctx, items):
    """`a ~ b`, escaping like Jinja's own concatenation, refused before the joined text exists
    when it would be too large (escaping makes a character up to five)."""
    for item in items:
        _check_text_size(item)
    texts = [soft_str(item) for item in items]
    escaping = eval_ctx.autoescape and any(hasattr(text, "__html__") for text in texts)
    size = sum(len(text) * (5 if escaping and not hasattr(text, "__html__") else 1)
               for text in texts)
    if size > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")
    return _charge((markup_join if eval_ctx.autoescape else str_join)(texts))


def _metered_value(value):
    """A comparison's result, after checking the deadline (comparisons are not calls)."""
    _spend()
    return value


def _safe_replace(value, old, new, count=None):
    """Jinja's replace, refused before the new text exists when it would be too large."""
    value, old, new = str(value), str(old), str(new)
    times = value.count(old) if old else len(value) + 1
    if count is not None:
        times = min(times, int(count))
    if len(value) + times * max(len(new) - len(old), 0) > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")
    return value.replace(old, new, -1 if count is None else int(count))


def _safe_join(value, separator=""):
    """Jinja's join, refused before the joined text exists when it would be too large."""
    for item in value:
        _check_text_size(item)
    items = [str(item) for item in value]
    if sum(map(len, items)) + len(separator) * max(len(items) - 1, 0) > MAX_OUTPUT_CHARS:
        raise RenderError("the template builds a value that is too large")
    return separator.join(items)


def _check_strip_chars(chars) -> None:
    """Refuse more than MAX_STRIP_CHARS characters to strip: the time is their number times the
    text's length."""
    if isinstance(chars, str) and len(chars) > MAX_STRIP_CHARS:
        raise RenderError(f"strip and trim take at most {MAX_STRIP_CHARS} characters to "
                          "remove")


def _safe_trim(value, chars=None):
    """Jinja's trim, with at most MAX_STRIP_CHARS characters to remove."""
    _check_strip_chars(chars)
    return str(value).strip(chars)


def _metered(function, *, as_text: bool = True):
    """`function` (a filter or test) checking the deadline first and paying for its result;
    Jinja's pass_environment and similar markers are kept by `wraps`. When `as_text`, the
    function may turn its arguments into text: lists whose text would be too large are refused
    first."""
    @wraps(function)
    def metered(*args, **kwargs):
        _spend()
        if as_text:
            for argument in (*args, *kwargs.values()):
                _check_text_size(argument)
        return _charge(function(*args, **kwargs))
    return metered


def _allowed_attribute(obj, attribute) -> bool:
    """Whether the allow-list of `obj`'s type has `attribute`."""
    return any(isinstance(obj, kind) and attribute in names
               for kind, names in ALLOWED_ATTRIBUTES.items())


class _CappedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, narrowed to the subset that the parse-time check allows: every attribute
    is read through a per-type allow-list, arithmetic is refused, every call, filter, test,
    comparison, loop step and printed value checks the deadline, and every value built is paid
    for from the budget and capped in size. Jinja calls `call_binop` only for the operators in
    `intercepted_binops`, and folds no constant through them."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context, operator, left, right):
        """Refused: the parse-time check already refuses arithmetic; this is the second lock."""
        raise RenderError(f"arithmetic (“{operator}”) is not available in notification "
                          "templates")

    def getattr(self, obj, attribute):
        """An attribute of the allow-list of `obj`'s type, else an undefined that refuses."""
        if not _allowed_attribute(obj, attribute):
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        """`text[0]`, `text[1:3]` and the same on lists: a position or a slice, nothing else
        (`text['format']` would be `text.format`)."""
        if not (isinstance(obj, (str, list, tuple))
                and isinstance(argument, (int, slice))):
            # the refusal names the item, briefly: it may be a long text or a list
            shown = argument[:40] if isinstance(argument, str) else type(argument).__name__
            return self.unsafe_undefined(obj, shown)
        _spend()
        return _charge(super().getitem(obj, argument))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's signature)
        """Call one of the allowed text methods (an undefined raises its own error), checking
        the deadline first and paying for the result."""
        _spend()
        if not isinstance(__obj, Undefined):
            owner, method = getattr(__obj, "__self__", None), getattr(__obj, "__name__", None)
            if not (isinstance(owner, str) and method in SAFE_STR_METHODS):
                raise RenderError("only text methods can be called, as in firstname.upper()")
            if method in {"strip", "lstrip", "rstrip"} and args:
                _check_strip_chars(args[0])
        return _charge(super().call(__context, __obj, *args, **kwargs))

    def _parse(self, source, name, filename):
        """Parse within the size limits, refuse what is outside the subset (with every line),
        then route loops, `~`, slices and comparisons through the budget. Jinja calls this
        for every compile, so that no path renders an unchecked template."""
        _check_source_size(self, source, name, filename)
        parser = Parser(self, source, name, filename)
        try:
            tree = parser.parse()
        except RecursionError:
            raise TemplateSyntaxError("the template is nested too deeply",
                                      parser.stream.current.lineno, name, filename) from None
        problems = subset_problems(tree)
        if problems:
            raise TemplateRefused(problems, name, filename)
        return _Guard().visit(tree)


def _check_source_size(env: ImmutableSandboxedEnvironment, source: str, name, filename) -> None:
    """Refuse a part longer than MAX_SOURCE_CHARS or of more than MAX_TOKENS tokens, before
    the parser (whose time and memory grow with them) sees it."""
    if len(source) > MAX_SOURCE_CHARS:
        line = source.count("\n", 0, MAX_SOURCE_CHARS) + 1
        raise TemplateSyntaxError(f"longer than {MAX_SOURCE_CHARS} characters", line, name,
                                  filename)
    line = 1
    try:
        for count, token in enumerate(env._tokenize(source, name, filename), start=1):
            line = token.lineno
            if count > MAX_TOKENS:
                raise TemplateSyntaxError(
                    f"more than {MAX_TOKENS} names, values, operators, tags and runs of text; "
                    "make the template simpler", line, name, filename)
    except ValueError:  # a number literal of thousands of digits
        raise TemplateSyntaxError("a number is too long", line, name, filename) from None


def subset_problems(tree: nodes.Template) -> list[tuple[int, str]]:
    """(line, reason) of every construct of `tree` outside the subset of Jinja that
    notification templates may use, by line: no arithmetic, no macros, no calls but text
    methods, attributes only from the allow-lists, items only by position, no deeper than
    MAX_DEPTH. An empty list means the template is inside the subset."""
    problems: set[tuple[int, str]] = set()
    stack: list[tuple[nodes.Node, int, int, nodes.Node | None]] = [(tree, 0, 0, None)]
    while stack:  # a loop, not recursion: the tree may be deeper than Python's stack
        node, depth, blocks, parent = stack.pop()
        blocks += isinstance(node, BLOCK_TAGS)
        problem = _node_problem(node, parent)
        if problem is None and depth > MAX_DEPTH:
            problem = f"expressions and tags are nested more than {MAX_DEPTH} deep"
        if problem is None and blocks > MAX_BLOCKS:
            problem = f"tags are nested more than {MAX_BLOCKS} deep"
        if problem is not None:
            problems.add((node.lineno, problem))
            continue
        stack.extend((child, depth + 1, blocks, node) for child in node.iter_child_nodes())
    return sorted(problems)


def _node_problem(node: nodes.Node, parent: nodes.Node | None) -> str | None:
    """Why `node` (whose parent is `parent`) is outside the subset, or None."""
    for node_type, tag in FORBIDDEN_TAGS.items():
        if isinstance(node, node_type):
            return f"“{tag}” is not allowed in notification templates."
    for node_type, reason in REFUSED_NODES.items():
        if isinstance(node, node_type):
            return reason
    if isinstance(node, ARITHMETIC):
        return (f"arithmetic (“{node.operator}”) is not available in notification templates; "
                "join text with ~.")
    if isinstance(node, (nodes.Neg, nodes.Pos)) and not (
            isinstance(node.node, nodes.Const) and type(node.node.value) in (int, float)):
        return (f"arithmetic (“{node.operator}”) is not available in notification templates; "
                "only a number may have a sign, as in -1.")
    if isinstance(node, nodes.Getattr) or (isinstance(node, nodes.Call)
                                           and isinstance(node.node, nodes.Getattr)):
        attribute = node.attr if isinstance(node, nodes.Getattr) else node.node.attr
        if attribute not in SAFE_STR_METHODS | LOOP_ATTRIBUTES:
            return (f"“.{attribute}” is not available: text has the methods "
                    f"{', '.join(sorted(SAFE_STR_METHODS))}; a loop has "
                    f"{', '.join('loop.' + name for name in sorted(LOOP_ATTRIBUTES))}.")
        if isinstance(node, nodes.Getattr) and attribute in SAFE_STR_METHODS \
                and not (isinstance(parent, nodes.Call) and parent.node is node):
            return f"“.{attribute}” is a text method: call it, as in .{attribute}()."
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
            and isinstance(node.arg.value, str):
        return (f"“[{node.arg.value!r}]” is not available: take characters by position, as in "
                "firstname[0].")
    if isinstance(node, nodes.Call) and not (isinstance(node.node, nodes.Getattr)
                                            and node.node.attr in SAFE_STR_METHODS):
        return "only text methods can be called, as in firstname.upper()."
    if isinstance(node, (nodes.Call, nodes.Filter, nodes.Test)) \
            and (node.dyn_args is not None or node.dyn_kwargs is not None):
        return "* and ** arguments are not available in notification templates."
    if isinstance(node, nodes.For) and node.recursive:
        return "recursive loops are not available in notification templates."
    if not isinstance(node, ALLOWED_NODES):
        return f"{type(node).__name__} is not available in notification templates."
    return None


def _static_text(body: list[nodes.Node]) -> int:
    """Characters of static text in `body`, outside nested loops (which pay for their own)."""
    total, stack = 0, list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif not isinstance(node, nodes.For):
            stack.extend(node.iter_child_nodes())
    return total


class _Guard(NodeTransformer):
    """Rewrites a parsed template so that loops, `~`, slices and comparisons pay from the
    budget."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        """`for x in items` loops over the items through the budget's guard, each step paying
        for the static text that the body prints."""
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, GUARD_FILTER, [nodes.Const(_static_text(node.body))],
                                 [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        """`a ~ b` becomes a capped join of `[a, b]`."""
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), CONCAT_FILTER, [], [],
                            None, None, lineno=node.lineno)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        """`text[1:]` is compiled to a plain slice, not through the sandbox's `getitem`: the
        copy it makes is paid for like any other value built."""
        self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice):
            return node
        return nodes.Filter(node, CHARGE_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Filter:
        """`a in b`, `a == b`… check the deadline: many in one expression add up."""
        self.generic_visit(node)
        return nodes.Filter(node, METER_FILTER, [], [], None, None, lineno=node.lineno)


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = _CappedSandbox(undefined=StrictUndefined, autoescape=autoescape, loader=None,
                         finalize=_finalize)
    env.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict
    builtin_filters, builtin_tests = env.filters, env.tests
    env.filters = {name: _metered(builtin_filters[name], as_text=name not in WHOLE_VALUE_FILTERS)
                   for name in ALLOWED_FILTERS}
    for name, function in (("replace", _safe_replace), ("join", _safe_join),
                           ("trim", _safe_trim)):
        env.filters[name] = _metered(function, as_text=name not in WHOLE_VALUE_FILTERS)
    env.filters[GUARD_FILTER] = _guarded_iter
    env.filters[CONCAT_FILTER] = _capped_concat
    env.filters[METER_FILTER] = _metered_value
    env.filters[CHARGE_FILTER] = _charge
    env.tests = {name: _metered(builtin_tests[name], as_text=name in TEXT_TESTS)
                 for name in ALLOWED_TESTS}
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
    "password": "The generated password: it is in this e-mail only, never stored in clear "
                "(empty in the e-mail with a link).",
    "set_password_url": "The one-time link to choose a password (empty in the e-mail with a "
                        "password).",
    "login_url": "The address of the login page.",
    "site_name": "The site's name (BULKIMPORT_SITE_NAME).",
    "expires": "When the password (or the link) stops working, in the site's time zone, e.g. "
               "2026-12-02 09:30 UTC.",
    "must_change_password": "True when the user must choose a new password at first login.",
}
PARTS = (("subject", "subject", False), ("html", "HTML body", True), ("text", "text body", False))


def invitation_context(*, username: str, firstname: str, surname: str, email: str,
                       language: str | None, password: str, login_url: str, site_name: str,
                       expires: datetime, must_change_password: bool,
                       set_password_url: str = "", time_zone: str = "UTC") -> dict:
    """The documented variables of the invitation template, and nothing else; `expires` (UTC)
    is written in the site's `time_zone`."""
    return {
        "username": username, "firstname": firstname, "surname": surname, "email": email,
        "language": language or "", "password": password,
        "set_password_url": set_password_url, "login_url": login_url,
        "site_name": site_name, "expires": zoned_text(expires, time_zone),
        "must_change_password": must_change_password,
    }


SAMPLE_PASSWORD = "Sample-Password-7x4Q"
SAMPLE_LINK_TOKEN = "sample-token-9Qx2"


def sample_context(*, language: str, login_url: str, site_name: str, days: int,
                   must_change_password: bool = True, link: bool = False,
                   time_zone: str = "UTC", **person: str) -> dict:
    """Sample data for previews and the test render at save: Jane Doe unless `person` (username,
    firstname, surname, email) says otherwise; with `link`, a link's e-mail (no password)."""
    details = {"username": "jdoe", "firstname": "Jane", "surname": "Doe",
               "email": "jane.doe@example.com", **person}
    url = login_url.removesuffix("/login") + "/set-password/" + SAMPLE_LINK_TOKEN
    return invitation_context(
        **details, language=language, password="" if link else SAMPLE_PASSWORD,
        set_password_url=url if link else "", login_url=login_url,
        site_name=site_name, expires=utcnow() + timedelta(days=days),
        must_change_password=must_change_password, time_zone=time_zone)


def longest_context(context: dict, length: int = 254) -> dict:
    """`context` with every text variable as long as a user's value can be, for the test render
    that proves a template stays within its budget for every user."""
    return {name: ("W" * length if isinstance(value, str) else value)
            for name, value in context.items()}


def render(template: NotificationTemplate, context: dict) -> tuple[str, str, str]:
    """Render subject, HTML and text within one budget; raises RenderError naming the part
    (and line) that failed. Compiling checks each part first, as `check_template` does."""
    compiled = []
    for field, name, html in PARTS:
        try:
            compiled.append(_compiled(getattr(template, field), html))
        except TemplateSyntaxError as exc:
            raise RenderError(f"{name}, line {exc.lineno}: {exc.message}") from None
        except Exception as exc:  # Python's own limits on the code Jinja generates
            raise RenderError(f"{name}: {exc.__class__.__name__}: {exc}") from None
    # The deadline starts after compiling: MAX_TOKENS bounds that, and a slow first compile
    # must not make a good template fail.
    token = _budget.set(_Budget(deadline=time.monotonic() + RENDER_SECONDS))
    try:
        parts = []
        for (_, name, _), part in zip(PARTS, compiled, strict=True):
            try:
                output = _capped_render(part, context)
            except RenderError as exc:
                raise RenderError(f"{name}: {exc}") from None
            except Exception as exc:  # undefined names, sandbox refusals
                raise RenderError(f"{name}: {exc.__class__.__name__}: {exc}") from None
            parts.append(output)
    finally:
        _budget.reset(token)
    subject = " ".join(parts[0].split())  # one line: no header injection through the subject
    return subject, parts[1], parts[2]


def check_template(template: NotificationTemplate, sample: dict,
                   variables: dict[str, str], required: str | None = None) -> list[str]:
    """Every reason not to store `template`, each naming the part (and line): syntax errors,
    sizes, constructs outside the subset (forbidden tags, arithmetic, attributes, calls),
    unknown variables, bodies that do not use the `required` variable (the credential the
    e-mail exists for), then a failing test render with `sample` and with the longest values a
    user can have. An empty list means it is safe to save."""
    problems = []
    for field, name, html in PARTS:
        source = getattr(template, field)
        env = _HTML if html else _TEXT
        try:
            tree = env.parse(source)
            _compiled(source, html)  # unknown filters and tests
        except TemplateRefused as exc:
            problems += [f"{name}, line {line}: {message}" for line, message in exc.problems]
            continue
        except TemplateSyntaxError as exc:
            problems.append(f"{name}, line {exc.lineno}: {exc.message}")
            continue
        except Exception as exc:  # Python's own limits on the code Jinja generates
            problems.append(f"{name}: {exc.__class__.__name__}: {exc}")
            continue
        unknown = _unknown_names(tree, variables)
        for variable, line in unknown:
            problems.append(f"{name}, line {line}: unknown variable “{variable}”; the variables "
                            f"are {', '.join(variables)}.")
        if field != "subject" and required in meta.find_undeclared_variables(tree):
            required = None
    if required:
        problems.append(f"Neither body uses {{{{ {required} }}}}: without it the user cannot "
                        "log in. Put it in the HTML body or the text body.")
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
