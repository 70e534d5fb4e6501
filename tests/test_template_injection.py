"""Server-side template injection: every payload an editor might type is refused at Save or
renders inert, and no secret (the secret key, the database URL, the environment, files) ever
appears in a preview, a saved template's output or a test e-mail (issue 5, point 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import login_admin

from bulkimport.mailing.templating import INVITATION

EDIT = f"/admin/system/localisation/en/templates/{INVITATION}"
SECRET_KEY = "ssti-canary-secret-key-5521"
ENV_CANARY = "env-canary-value-8812"

DOUBLING = "".join(f"{{% set v{i + 1} = v{i} ~ v{i} %}}" for i in range(24))

PAYLOADS = {
    # attribute walks to classes, globals and builtins
    "str-class-mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "str-class-base": "{{ ''.__class__.__base__.__subclasses__() }}",
    "variable-class": "{{ username.__class__ }}",
    "variable-init-globals": "{{ username.__init__.__globals__ }}",
    "method-globals": "{{ username.upper.__globals__ }}",
    "method-self": "{{ username.split.__self__ }}",
    "list-class": "{{ [].__class__.__base__.__subclasses__() }}",
    "tuple-class": "{{ ().__class__ }}",
    "bool-class": "{{ must_change_password.__class__.__base__ }}",
    "dunder-by-item": "{{ username['__class__'] }}",
    "dunder-by-item-on-list": "{{ [username]['__class__'] }}",
    "loop-internals": "{% for c in username %}{{ loop.__class__.__init__.__globals__ }}"
                      "{% endfor %}",
    # names Flask's own environment would expose
    "config": "{{ config }}",
    "config-items": "{{ config.items() }}",
    "config-secret": "{{ config['SECRET_KEY'] }}",
    "self": "{{ self }}",
    "self-globals": "{{ self.__init__.__globals__ }}",
    "self-context": "{{ self._TemplateReference__context }}",
    "request": "{{ request.environ }}",
    "url-for-globals": "{{ url_for.__globals__['os'].environ }}",
    "get-flashed-messages": "{{ get_flashed_messages.__globals__ }}",
    "g": "{{ g }}",
    "session": "{{ session }}",
    # Jinja's default globals
    "cycler-globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].environ }}",
    "namespace-globals": "{{ namespace.__init__.__globals__ }}",
    "joiner": "{{ joiner().__init__.__globals__ }}",
    "range-bomb": "{% for i in range(10**9) %}x{% endfor %}",
    "dict-global": "{{ dict(a=1).__class__ }}",
    # filters that reach attributes or build values
    "attr-filter": "{{ username|attr('__class__') }}",
    "attr-filter-hex": "{{ username|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "attr-filter-joined": "{{ username|attr(['__','class__']|join) }}",
    "map-attribute": "{{ [username]|map(attribute='__class__')|list }}",
    "format-filter": "{{ '%s%s'|format(username, username) }}",
    "center-filter": "{{ username|center(999999999) }}",
    "indent-filter": "{{ username|indent(999999999) }}",
    "wordwrap-filter": "{{ username|wordwrap(999999999) }}",
    "safe-filter": "{{ firstname|safe }}",
    "tojson-filter": "{{ username|tojson }}",
    # format tricks
    "str-format-class": "{{ '{0.__class__}'.format(username) }}",
    "str-format-padding": "{{ '{0:>999999999}'.format(username) }}",
    "format-map": "{{ '{a}'.format_map({'a': username}) }}",
    "percent-format": "{{ '%s' % username }}",
    "percent-padding": "{{ '%999999999s' % username }}",
    # size and time bombs
    "string-multiplication": "{{ 'a' * 999999999 }}",
    "list-multiplication": "{{ [username] * 999999999 }}",
    "power-tower": "{{ 9 ** 9 ** 9 }}",
    "concat-doubling": "{% set v0 = username %}" + DOUBLING + "{{ v24|length }}",
    "plus-doubling": "{% set a = username + username %}{% set b = a + a %}{% set c = b + b %}"
                     "{% set d = c + c %}{% set e = d + d %}{% set f = e + e %}{% set g = f + f %}"
                     "{% set h = g + g %}{% set i = h + h %}{{ i|length }}",
    "nested-loops": "{% for a in username * 20 %}{% for b in username * 20 %}"
                    "{% for c in username * 20 %}x{% endfor %}{% endfor %}{% endfor %}",
    "silent-nested-loops": "{% for a in username %}{% for b in username %}{% for c in username %}"
                           "{% endfor %}{% endfor %}{% endfor %}",
    "replace-amplification": "{{ username|replace('', username * 400) }}",
    "join-amplification": "{{ (username * 400)|join(username * 400) }}",
    "macro-recursion": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "macro-fan-out": "{% macro a() %}{% endmacro %}"
                     + "".join(f"{{% macro m{i}() %}}{{{{ {'m' + str(i - 1) if i else 'a'}() }}}}"
                               f"{{{{ {'m' + str(i - 1) if i else 'a'}() }}}}{{% endmacro %}}"
                               for i in range(30)) + "{{ m29() }}",
    "recursive-loop": "{% for c in username recursive %}{{ loop(username) }}{% endfor %}",
    "set-block-capture": "{% set big %}{% for c in username * 10 %}"
                         + "y" * 2000 + "{% endfor %}{% endset %}{{ big|length }}",
    # template loading
    "include-passwd": "{% include '/etc/passwd' %}",
    "extends": "{% extends 'base.html' %}",
    "import": "{% import 'os' as os %}",
    "from-import": "{% from 'os' import environ %}",
    # inert by design: shown as text, never evaluated
    "raw-block": "{% raw %}{{ config }}{% endraw %}",
    "escaped-html": "<script>{{ '<script>alert(1)</script>' }}</script>",
    "internal-filter-by-name": "{{ username|_guarded_iter|string }}",
}


@pytest.fixture
def editor(app_factory, monkeypatch):
    monkeypatch.setenv("BULKIMPORT_SSTI_CANARY", ENV_CANARY)
    app = app_factory(SECRET_KEY=SECRET_KEY)
    return app, login_admin(app)


def test_there_are_at_least_30_payloads():
    assert len(PAYLOADS) >= 30


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_a_payload_is_refused_or_inert_and_reveals_nothing(editor, payload):
    app, client = editor
    fields = {"subject": "Hello", "html": f"<p>{payload}</p>", "text": payload}
    outputs = []
    preview = client.post(EDIT, data={**fields, "preview": "1"})
    outputs.append(preview.get_data(as_text=True))
    saved = client.post(EDIT, data={**fields, "save": "1"})
    outputs.append(saved.get_data(as_text=True))
    if saved.status_code == 302:  # stored: then it must render inert, in the editor and in mail
        outputs.append(client.get(EDIT).get_data(as_text=True))
        sent = client.post(EDIT, data={**fields, "send_test": "1"})
        outputs.append(sent.get_data(as_text=True))
        assert "A test e-mail" in outputs[-1]  # what was saved renders
        outputs += [p.read_text() for p in (Path(app.instance_path) / "outbox").glob("*.eml")]
    else:
        assert saved.status_code == 422
        assert 'id="template-problems"' in outputs[-1]
        assert "Nothing was saved" in outputs[-1]
    secrets = [SECRET_KEY, app.config["SQLALCHEMY_DATABASE_URI"], ENV_CANARY, "root:x:0:0",
               "uid=", "<class '", "&lt;class &#39;", "<module", "&lt;module", "__builtins__",
               "<function", "&lt;function", "<built-in", "&lt;built-in"]
    for output in outputs:
        for secret in secrets:
            assert secret not in output, (secret, output[:3000])


@pytest.mark.parametrize("payload", ["{{ config }}", "{{ self }}", "{% include 'x' %}",
                                     "{{ ''.__class__ }}", "{{ 'a' * 999999999 }}"])
def test_refused_payloads_leave_no_version(editor, payload):
    app, client = editor
    response = client.post(EDIT, data={"subject": payload, "html": "", "text": "", "save": "1"})
    assert response.status_code == 422
    with app.app_context():
        from bulkimport.extensions import db
        from bulkimport.models import TemplateVersion

        assert db.session.query(TemplateVersion).count() == 0
