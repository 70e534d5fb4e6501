"""Jinja's syntax errors in a notification template said in plain words: what is wrong and how to
put it right, for an administrator who edits an e-mail rather than code."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jinja2 import Environment, TemplateSyntaxError

# A problem as the template checks word it: "text body, line 2: <message>", maybe after a lead
# such as "The preview cannot be rendered: ".
_PROBLEM = re.compile(r"(?P<lead>.*?)(?P<part>subject|HTML body|text body), line (?P<line>\d+): "
                      r"(?P<message>.*)", re.S)
# The tags of the subset, for the sentence about an unknown one.
KNOWN_TAGS = "if, elif, else, for, set, with, filter and raw, with their end tags (endif…)"
# Jinja's names of the tokens it expected or found, as the editor writes them.
_TOKENS = {
    "end of print statement": "“}}”", "end of statement block": "“%}”",
    "end of template": "the end of the template", "name": "a name", "string": "text in quotes",
    "integer": "a number", "float": "a number", "operator": "an operator",
}


@dataclass(frozen=True)
class TemplateProblem:
    """One problem of a template: the part and line it is on (when it is on one), and what to do
    about it in plain words; `lead` says which action found it, when not Save."""

    lead: str
    part: str | None
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.part}, line {self.line}: " if self.part else ""
        return f"{self.lead}{where}{self.message}"


def plain_problems(problems: list[str], sources: Mapping[str, str]) -> list[TemplateProblem]:
    """`problems` as the template checks word them, with Jinja's own messages said in plain
    words; `sources` are the typed parts by name (subject, HTML body, text body)."""
    return [plain_problem(problem, sources) for problem in problems]


def plain_problem(problem: str, sources: Mapping[str, str]) -> TemplateProblem:
    """One problem with Jinja's message said in plain words; a message that is not Jinja's (the
    checks of the subset already speak plainly) is kept as it is."""
    found = _PROBLEM.fullmatch(problem)
    if not found:
        return TemplateProblem("", None, None, problem)
    part, line, message = found["part"], int(found["line"]), found["message"]
    for pattern, explain in _RULES:
        match = pattern.fullmatch(message.strip())
        if match:
            line, message = explain(match, sources.get(part, ""), line)
            break
    return TemplateProblem(found["lead"], part, line, message)


def _token(name: str) -> str:
    """A token of Jinja's messages as the editor writes it: `“}}”`, `a name`, `“)”`."""
    return _TOKENS.get(name, f"“{name}”")


def _open_block_line(source: str, tag: str, fallback: int) -> int:
    """The line of the last `{% tag %}` of `source` that is never closed, else `fallback`."""
    opened: list[tuple[str, int]] = []
    try:
        tokens = list(Environment().lex(source))
    except TemplateSyntaxError:
        return fallback
    for (line, kind, _), (_, next_kind, value) in zip(tokens, tokens[1:], strict=False):
        if kind != "block_begin" or next_kind != "name":
            continue
        if value.startswith("end") and opened and opened[-1][0] == value[3:]:
            opened.pop()
        elif value in ("if", "for", "with", "filter"):
            opened.append((value, line))
    lines = [line for name, line in opened if name == tag]
    return lines[-1] if lines else fallback


def _end_of_block(tag: str) -> str:
    return f"{{% end{tag} %}}"


def _unclosed_block(match, source, line):
    tag = match["block"]
    return (_open_block_line(source, tag, line),
            f"this “{{% {tag} %}}” is never closed: add “{_end_of_block(tag)}” where it ends.")


def _wrong_tag_in_block(match, source, line):
    tag, block = match["tag"], match["block"]
    if tag.startswith("end"):
        return line, (f"“{{% {tag} %}}” does not close the block that is open here: that is a "
                      f"“{{% {block} %}}”, closed by “{_end_of_block(block)}”.")
    once = " (an “else” comes once)" if tag == "else" else ""
    return line, (f"“{{% {tag} %}}” cannot come here: the “{{% {block} %}}” open here goes on "
                  f"with “{_end_of_block(block)}”{once}.")


def _unknown_tag(match, source, line):
    tag = match["tag"]
    if tag.startswith("end") and tag != "end":
        return line, (f"“{{% {tag} %}}” closes nothing: there is no “{{% {tag[3:]} %}}” open "
                      "before it.")
    if tag in ("elif", "else"):
        return line, f"“{{% {tag} %}}” belongs inside an “{{% if %}}” … “{{% endif %}}”."
    return line, (f"“{{% {tag} %}}” is not a tag of notification templates; the tags are "
                  f"{KNOWN_TAGS}.")


def _unclosed_variable(match, source, line):
    return line, "“{{” is never closed: add “}}” after the variable’s name."


def _expected_token(match, source, line):
    expected, got = match["expected"], match["got"]
    if expected == "end of print statement" and got == "name":
        return line, ("two words between “{{” and “}}”: a variable’s name has no spaces "
                      "(firstname), and values are joined with ~, as in "
                      "{{ firstname ~ ' ' ~ surname }}.")
    return line, f"{_token(expected)} is missing here, before {_token(got)}."


def _empty_expression(match, source, line):
    closing = match["got"]
    if closing == "end of print statement":
        return line, "“{{ }}” is empty: write a variable’s name between the braces."
    if closing == "end of statement block":
        return line, ("this tag needs what it works on after its name, as in "
                      "{% if must_change_password %} or {% for letter in firstname %}.")
    return line, f"a value is missing before {_token(closing)}."


def _unexpected(match, source, line):
    found, expected = match["found"], match["expected"]
    if expected:
        return line, (f"{_token(expected)} is missing before {_token(found)}: every “(” needs "
                      "its “)” and every “[” its “]”." if expected in (")", "]") else
                      f"{_token(expected)} is missing before {_token(found)}.")
    if found == "}":
        return line, "a single “}”: a variable is closed with two, as in {{ firstname }}."
    if found in ("end of print statement", "end of statement block"):
        return line, (f"something is missing before {_token(found)}: “~”, “==”, “and” and the "
                      "like need a value on each side.")
    if found in (")", "]"):
        return line, f"this “{found}” closes nothing: there is no matching opening bracket."
    return line, f"{_token(found)} cannot come here."


def _unexpected_char(match, source, line):
    char = match["char"]
    if char in "'\"":
        return line, (f"a quote ({char}) opens a text that is never closed: add the closing "
                      f"{char} before “}}}}” or “%}}”.")
    return line, f"the character “{char}” cannot be used between {{{{ }}}} or {{% %}}."


def _no_filter(match, source, line):
    return line, (f"there is no filter named “{match['name']}” (after “|”): check its spelling, "
                  "or use a text method such as {{ firstname.upper() }}.")


def _no_test(match, source, line):
    return line, f"there is no test named “{match['name']}” (after “is”): check its spelling."


def _missing_comment_end(match, source, line):
    return line, "a comment opened with “{#” is never closed: add “#}” where it ends."


def _missing_raw_end(match, source, line):
    return line, "“{% raw %}” is never closed: add “{% endraw %}” where it ends."


def _tag_name_expected(match, source, line):
    return line, "“{% %}” needs a tag name, as in {% if must_change_password %}."


_Explain = Callable[[re.Match, str, int], tuple[int, str]]
_RULES: list[tuple[re.Pattern, _Explain]] = [
    (re.compile(r"Unexpected end of template\. Jinja was looking for the following tags: .*"
                r"The innermost block that needs to be closed is '(?P<block>\w+)'\.", re.S),
     _unclosed_block),
    (re.compile(r"Encountered unknown tag '(?P<tag>\w+)'\. Jinja was looking for the following "
                r"tags: .*The innermost block that needs to be closed is '(?P<block>\w+)'\.",
                re.S), _wrong_tag_in_block),
    (re.compile(r"Encountered unknown tag '(?P<tag>\w+)'\.(?: .*)?", re.S), _unknown_tag),
    (re.compile(r"unexpected end of template, expected 'end of print statement'\.?"),
     _unclosed_variable),
    (re.compile(r"expected token '(?P<expected>[^']+)', got '(?P<got>[^']+)'"), _expected_token),
    (re.compile(r"Expected an expression, got '(?P<got>[^']+)'"), _empty_expression),
    (re.compile(r"unexpected '(?P<found>[^']+)'(?:, expected '(?P<expected>[^']+)')?"),
     _unexpected),
    (re.compile(r"unexpected char (?P<q>['\"])(?P<char>.)(?P=q) at \d+"), _unexpected_char),
    (re.compile(r"No filter named '(?P<name>[^']+)'\.?(?: .*)?", re.S), _no_filter),
    (re.compile(r"No test named '(?P<name>[^']+)'\.?(?: .*)?", re.S), _no_test),
    (re.compile(r"Missing end of comment tag"), _missing_comment_end),
    (re.compile(r"Missing end of raw directive"), _missing_raw_end),
    (re.compile(r"tag name expected"), _tag_name_expected),
]
