"""Templates that would build huge values or hold the interpreter are rejected, not run.

With only the output capped, each payload here would allocate gigabytes or compute for
seconds. Validation must now report it as a problem of the field, quickly and without a
MemoryError escaping. The process is capped so a regression fails here, not the machine.
"""

from __future__ import annotations

import resource

import pytest

from inbox.proactive.templates import (
    DraftTemplate,
    TemplateRenderError,
    check_source,
    render_update,
    sample_values,
)

HUGE = 4_000_000_000

PAYLOADS = {
    "power chain": "{{ ((((9 ** 99) ** 100) ** 100) ** 12) > 1 }}",
    "product chain": "{% set a = 9 ** 99 %}{% set b = a * a * a * a * a * a * a * a * a %}{{ b * b * b * b > 1 }}",
    "format width": f"{{{{ '{{:>{HUGE}}}'.format(customer_name) }}}}",
    "format_map": "{{ '{a}'.format_map({'a': customer_name}) }}",
    "percent width": f"{{{{ '%{HUGE}s' % customer_name }}}}",
    "percent precision": f"{{{{ '%.{HUGE}f' % 1.5 }}}}",
    "percent star": "{{ '%*s' % (400000000, customer_name) }}",
    "format filter": f"{{{{ '%{HUGE}s'|format(customer_name) }}}}",
    "center filter": f"{{{{ customer_name|center({HUGE}) }}}}",
    "center via map": f"{{{{ [customer_name]|map('center', {HUGE})|join }}}}",
    "ljust method": f"{{{{ customer_name.ljust({HUGE}) }}}}",
    "rjust method": f"{{{{ customer_name.rjust({HUGE}) }}}}",
    "zfill method": f"{{{{ reference.zfill({HUGE}) }}}}",
    "replace method": "{{ ('a' * 50000).replace('a', 'a' * 50000) }}",
    "replace filter": "{{ ('a' * 50000)|replace('a', 'a' * 50000) }}",
    "indent filter": "{{ ('\\n' * 40000)|indent(10000) }}",
    "wordwrap filter": "{{ ('a ' * 25000)|wordwrap(1) }}",
    "join separator": "{{ range(1000)|join('x' * 50000) }}",
    "concatenation doubling": "{% set a = 'x' * 40000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c|length }}",
    "plus doubling": "{% set a = 'x' * 40000 %}{% set b = a + a %}{{ b|length }}",
}


@pytest.fixture(autouse=True)
def limited_memory():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("source", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_oversized_template_is_field_problem(source):
    [problem] = check_source("email_body", source)

    assert problem.field == "email_body"
    assert problem.reason.startswith("not allowed:")


@pytest.mark.parametrize("source, reason", [
    ("{{ customer_name.upper }}", "add () after its name"),
    ("Hi {{ reference.split }}", "add () after its name"),
    ("{{ self }}", "cannot be written"),
    ("{{ customer_name|attr('upper') }}", "add () after its name"),
])
def test_object_written_as_text_rejected(source, reason):
    [problem] = check_source("whatsapp_body", source)

    assert reason in problem.reason


@pytest.mark.parametrize("source, expected", [
    ("{{ customer_name.upper() }}", "MARIA"),
    ("{{ customer_name|center(9) }}|", "Maria  |"),
    ("{{ '%6s'|format(reference) }}", "#1042"),
    ("{{ '%05.1f' % 2.25 }}", "002.2"),
    ("{{ queue_position * 1000 ** 3 }}", "3000000000"),
    ("{{ 2 ** 100 > 1 }}", "True"),
    ("{{ customer_name ~ ', ' ~ reference }}", "Maria, #1042"),
    ("{{ reference.replace('#', 'No. ') }}", "No. 1042"),
    ("{{ ['a', 'b']|join(', ') }}", "a, b"),
])
def test_ordinary_templates_still_render(source, expected):
    assert check_source("email_body", source) == []
    assert render_update(DraftTemplate(email_body=source), sample_values()).email_body == expected


class _Exhausting(str):
    """A value whose text cannot be made, as when memory runs out during a render."""

    def __str__(self) -> str:
        raise MemoryError


def test_memory_error_during_render_is_a_render_error():
    values = {**sample_values(), "customer_name": _Exhausting("Maria")}

    with pytest.raises(TemplateRenderError) as caught:
        render_update(DraftTemplate(email_body="Hi {{ customer_name }}"), values)

    assert caught.value.problem.field == "email_body"
    assert "memory" in caught.value.problem.reason
