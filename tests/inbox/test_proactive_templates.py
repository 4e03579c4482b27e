"""Update templates: validation at save time, sandboxed rendering, conditions and look-ups."""

from __future__ import annotations

import pytest

from inbox.models import Contact, Conversation, Label, Team, UpdateTemplate
from inbox.proactive.templates import (
    MAX_RENDERED,
    DraftTemplate,
    InvalidTemplate,
    TemplateProblem,
    TemplateRenderError,
    create_update_template,
    enabled_templates,
    render_update,
    sample_values,
    template_applies,
    update_update_template,
    validate_template,
)

VALID = {
    "name": "Waiting on you",
    "trigger": "status_changed",
    "trigger_params": {"to_status": "pending"},
    "conditions": {"channels": ["email"]},
    "email_subject": "Your request {{ reference }}",
    "email_body": "Hello {{ customer_name }},\n\nWe need a reply from you: {{ reply_to }}",
    "whatsapp_body": "Hi {{ customer_name }}, we are waiting for your reply on {{ reference }}.",
    "whatsapp_content_sid": "HX" + "0" * 32,
    "whatsapp_variables": {"1": "customer_name", "2": "reference"},
}


def _with(**changes) -> dict:
    return {**VALID, **changes}


def _reasons(problems: list[TemplateProblem]) -> list[str]:
    return [problem.reason for problem in problems]


# ---- Validation ---------------------------------------------------------------------------


def test_valid_template_has_no_problems():
    assert validate_template(VALID) == []


def test_unknown_placeholder_reported_with_line():
    body = "Hello {{ customer_name }},\n\nYour case {{ reference }}\nThanks, {{ custmer_name }}"

    problems = validate_template(_with(email_body=body))

    assert problems == [TemplateProblem(
        "email_body", 4, "unknown placeholder 'custmer_name': did you mean 'customer_name'?",
    )]


def test_unknown_placeholder_inside_unused_branch():
    body = "Hi\n{% if queue_position > 100 %}\n{{ nobody_here }}\n{% endif %}"

    problems = validate_template(_with(whatsapp_body=body))

    assert problems == [TemplateProblem("whatsapp_body", 3, "unknown placeholder 'nobody_here'")]


def test_names_set_in_template_are_allowed():
    body = "{% set greeting = 'Hello' %}{{ greeting }} {{ customer_name }}\n{% for word in ['a', 'b'] %}{{ word }}{% endfor %}"

    assert validate_template(_with(email_body=body)) == []


@pytest.mark.parametrize(("body", "line", "reason_start"), [
    ("Hello\n\n{{ customer_name ", 3, "unexpected end of template"),
    ("Hello\n{% if status %}\nopen", 3, "Unexpected end of template"),
    ("One\nTwo\n{{ customer_name }}}\n{% endfor %}", 4, "Encountered unknown tag 'endfor'"),
    ("{{ reference | shout }}", 1, "unknown filter 'shout'"),
    ("{% if status is loud %}x{% endif %}", 1, "unknown test 'loud'"),
])
def test_syntax_errors_carry_line(body, line, reason_start):
    problems = validate_template(_with(email_body=body))

    assert len(problems) == 1
    assert problems[0].field == "email_body"
    assert problems[0].line == line
    assert problems[0].reason.startswith(reason_start)


@pytest.mark.parametrize("body", [
    "{{ ''.__class__ }}",
    "{{ customer_name.__class__.__mro__ }}",
    "{{ reference['__class__'] }}",
    "{{ customer_name.__init__.__globals__ }}",
])
def test_private_attributes_rejected_at_save(body):
    problems = validate_template(_with(whatsapp_body="ok\n" + body))

    assert problems
    assert problems[0].field == "whatsapp_body"
    assert problems[0].line == 2
    assert "is not allowed" in problems[0].reason


def test_sandbox_blocks_attribute_access_at_render():
    # A template stored before validation existed, or written straight to the database.
    template = DraftTemplate(whatsapp_body="Hi\n{{ ''.__class__.__mro__ }}")

    with pytest.raises(TemplateRenderError) as caught:
        render_update(template, sample_values())

    assert caught.value.problem.field == "whatsapp_body"
    assert caught.value.problem.line == 2
    assert "unsafe" in caught.value.problem.reason


def test_sandbox_blocks_format_string_escape():
    template = DraftTemplate(email_body="{{ '{0.__class__}'.format(customer_name) }}")

    with pytest.raises(TemplateRenderError) as caught:
        render_update(template, sample_values())

    assert "unsafe" in caught.value.problem.reason or "not allowed" in caught.value.problem.reason


@pytest.mark.parametrize(("body", "reason_part"), [
    ("{% include 'other.txt' %}", "cannot include"),
    ("{% extends 'base.txt' %}", "cannot include"),
    ("{% macro greet() %}hi{% endmacro %}{{ greet() }}", "macros are not supported"),
    ("{% for a in range(3) %}{% for b in range(3) %}x{% endfor %}{% endfor %}", "loop inside a loop"),
    ("{% for a in [1] recursive %}{{ loop([]) }}{% endfor %}", "recursive loops"),
])
def test_unbounded_constructs_rejected(body, reason_part):
    problems = validate_template(_with(email_body=body))

    assert any(reason_part in reason for reason in _reasons(problems)), problems


@pytest.mark.parametrize(("body", "reason_part"), [
    ("{{ 'x' * 100000 }}", "more than"),
    ("{{ 2 ** 100000 }}", "exponent"),
    ("{% for i in range(100000) %}.{% endfor %}", "range() is limited"),
    ("{{ customer_name + 1 }}", "concatenate"),
])
def test_runtime_failures_found_at_save(body, reason_part):
    problems = validate_template(_with(email_body=body))

    assert len(problems) == 1
    assert problems[0].line == 1
    assert reason_part in problems[0].reason


def test_long_output_fails_render():
    template = DraftTemplate(email_body="{% for i in range(1000) %}{{ 'x' * 100 }}{% endfor %}")

    with pytest.raises(TemplateRenderError) as caught:
        render_update(template, sample_values())

    assert f"longer than {MAX_RENDERED}" in caught.value.problem.reason


@pytest.mark.parametrize(("changes", "field", "reason_part"), [
    ({"trigger": "sometimes"}, "trigger", "unknown trigger 'sometimes'"),
    ({"trigger_params": {}}, "trigger_params", "to_status is required"),
    ({"trigger_params": {"to_status": "closed"}}, "trigger_params", "must be one of"),
    ({"trigger_params": {"to_status": "pending", "hours": 3}}, "trigger_params", "unknown parameter 'hours'"),
    ({"trigger": "no_agent_reply", "trigger_params": {"hours": 0}}, "trigger_params", "more than 0"),
    ({"trigger": "no_agent_reply", "trigger_params": {"hours": "4"}}, "trigger_params", "number of hours"),
    ({"trigger": "queue_wait", "trigger_params": {"hours": 2, "business_hours": "yes"}}, "trigger_params", "true or false"),
    ({"trigger": "periodic", "trigger_params": {"every_hours": 0.5}}, "trigger_params", "at least 1"),
    ({"trigger": "periodic", "trigger_params": {"every_hours": 10_000}}, "trigger_params", "at most 720"),
    ({"trigger": "resolved", "trigger_params": {"to_status": "open"}}, "trigger_params", "allowed are none"),
    ({"trigger_params": ["to_status"]}, "trigger_params", "must be an object"),
])
def test_trigger_params_checked(changes, field, reason_part):
    problems = validate_template(_with(**changes))

    assert [problem.field for problem in problems] == [field]
    assert reason_part in problems[0].reason


@pytest.mark.parametrize(("conditions", "reason_part"), [
    ({"channel": ["email"]}, "unknown condition 'channel'"),
    ({"channels": ["sms"]}, "unknown value 'sms'"),
    ({"priorities": ["critical"]}, "unknown value 'critical'"),
    ({"statuses": ["closed"]}, "unknown value 'closed'"),
    ({"team_ids": ["billing"]}, "positive integers"),
    ({"team_ids": [True]}, "positive integers"),
    ({"labels": [""]}, "label names"),
    ({"labels": "vip"}, "must be a list"),
])
def test_conditions_checked(conditions, reason_part):
    problems = validate_template(_with(conditions=conditions))

    assert [problem.field for problem in problems] == ["conditions"]
    assert reason_part in problems[0].reason


@pytest.mark.parametrize(("changes", "field", "reason_part"), [
    ({"whatsapp_variables": {"1": "customer_nam"}}, "whatsapp_variables", "unknown placeholder 'customer_nam'"),
    ({"whatsapp_variables": {"one": "reference"}}, "whatsapp_variables", "number from 1 to 99"),
    ({"whatsapp_content_sid": None}, "whatsapp_variables", "need a WhatsApp content SID"),
    ({"whatsapp_content_sid": "HX123"}, "whatsapp_content_sid", "32 hexadecimal digits"),
    ({"name": "  "}, "name", "a name is required"),
    ({"name": "x" * 121}, "name", "longer than 120"),
    ({"email_subject": "Line one\nLine two"}, "email_subject", "one line"),
    ({"email_subject": ""}, "email_subject", "needs a subject"),
    ({"enabled": "yes"}, "enabled", "true or false"),
    ({"colour": "blue"}, "colour", "unknown field"),
])
def test_fields_checked(changes, field, reason_part):
    problems = validate_template(_with(**changes))

    assert [problem.field for problem in problems] == [field]
    assert reason_part in problems[0].reason


def test_template_needs_something_to_send():
    problems = validate_template(_with(
        email_subject="", email_body="", whatsapp_body="", whatsapp_content_sid=None, whatsapp_variables={},
    ))

    assert _reasons(problems) == ["write an email body, a WhatsApp body or a WhatsApp content SID"]


# ---- Rendering ----------------------------------------------------------------------------


def test_render_fills_placeholders():
    context = {**sample_values(), "customer_name": "Grace", "reference": "#7"}

    rendered = render_update(DraftTemplate.from_fields(VALID), context)

    assert rendered.subject == "Your request #7"
    assert rendered.email_body == "Hello Grace,\n\nWe need a reply from you: support+c1042.5f2a9c@shop.example"
    assert rendered.whatsapp_body == "Hi Grace, we are waiting for your reply on #7."
    assert rendered.whatsapp_variables == {"1": "Grace", "2": "#7"}


def test_render_keeps_text_unescaped():
    context = {**sample_values(), "customer_name": "Tom & <Jerry>"}

    rendered = render_update(DraftTemplate(email_body="Dear {{ customer_name }}"), context)

    assert rendered.email_body == "Dear Tom & <Jerry>"


def test_render_conditional_blocks():
    body = "Hi {{ customer_name }}\n{% if agent_first_name %}\n{{ agent_first_name }} has your request.\n{% else %}\nThe next free agent takes it.\n{% endif %}"
    assigned = {**sample_values(), "agent_first_name": "Sam"}
    unassigned = {**sample_values(), "agent_first_name": ""}

    assert render_update(DraftTemplate(email_body=body), assigned).email_body == "Hi Maria\nSam has your request."
    assert render_update(DraftTemplate(email_body=body), unassigned).email_body == "Hi Maria\nThe next free agent takes it."


def test_subject_rendered_on_one_line():
    context = {**sample_values(), "customer_name": "Eve\r\nBcc: all@example.com"}

    rendered = render_update(DraftTemplate(email_subject="For {{ customer_name }}", email_body="x"), context)

    assert rendered.subject == "For Eve Bcc: all@example.com"


def test_whatsapp_variables_are_single_line_and_never_empty():
    template = DraftTemplate(whatsapp_variables={"2": "agent_first_name", "1": "customer_name"})
    context = {**sample_values(), "customer_name": "Ann\nMarie\tLee", "agent_first_name": ""}

    rendered = render_update(template, context)

    assert rendered.whatsapp_variables == {"1": "Ann Marie Lee", "2": "-"}
    assert list(rendered.whatsapp_variables) == ["1", "2"]


@pytest.mark.parametrize(
    "name",
    [
        "Ann\u2028Lee", "Ann\u2029Lee", "Ann\x0cLee", "Ann\x0bLee", "Ann\x85Lee", "Ann\x00Lee", "Ann\x1bLee",
        "Ann     Lee", "Ann \r\n \t Lee",
    ],
)
def test_whatsapp_variable_cleaned_for_whatsapp(name):
    template = DraftTemplate(whatsapp_variables={"1": "customer_name"})
    context = {**sample_values(), "customer_name": name}

    rendered = render_update(template, context)

    assert rendered.whatsapp_variables == {"1": "Ann Lee"}


def test_whatsapp_variable_cut_to_1024_characters():
    template = DraftTemplate(whatsapp_variables={"1": "customer_name"})
    context = {**sample_values(), "customer_name": "a" * 1023 + "      b"}

    rendered = render_update(template, context)

    assert rendered.whatsapp_variables == {"1": "a" * 1023}


def test_render_missing_value_is_an_error():
    context = {key: value for key, value in sample_values().items() if key != "reference"}

    with pytest.raises(TemplateRenderError) as caught:
        render_update(DraftTemplate(email_body="Case\n{{ reference }}"), context)

    assert caught.value.problem == TemplateProblem("email_body", 2, "'reference' is undefined")


# ---- Conditions and saving ----------------------------------------------------------------


@pytest.fixture
def conversation(state, whatsapp_channel):
    with state.session_factory() as session:
        team = Team(name="Billing", name_key="billing")
        label = Label(name="VIP", name_key="vip")
        contact = Contact(name="Grace")
        session.add_all([team, label, contact])
        session.flush()
        found = Conversation(
            channel_id=whatsapp_channel.id, contact_id=contact.id, team_id=team.id, priority="high", status="open",
        )
        found.labels.append(label)
        session.add(found)
        session.commit()
        yield session, found


@pytest.mark.parametrize(("conditions", "applies"), [
    ({}, True),
    ({"channels": []}, True),
    ({"channels": ["whatsapp"]}, True),
    ({"channels": ["email"]}, False),
    ({"priorities": ["high", "urgent"]}, True),
    ({"priorities": ["low"]}, False),
    ({"statuses": ["open"]}, True),
    ({"statuses": ["pending"]}, False),
    ({"labels": ["vip"]}, True),
    ({"labels": ["Returns", "VIP "]}, True),
    ({"labels": ["Returns"]}, False),
    ({"channels": ["whatsapp"], "priorities": ["low"]}, False),
])
def test_template_applies_by_conditions(conversation, conditions, applies):
    session, found = conversation
    team_id = found.team_id

    assert template_applies(DraftTemplate(conditions=conditions), found) is applies
    assert template_applies(DraftTemplate(conditions={**conditions, "team_ids": [team_id]}), found) is applies
    assert template_applies(DraftTemplate(conditions={**conditions, "team_ids": [team_id + 1]}), found) is False


def test_save_checks_references_and_names(state, conversation):
    session, found = conversation
    team_id = found.team_id
    create_update_template(session, None, _with(conditions={"team_ids": [team_id], "labels": ["vip"]}))
    session.commit()

    with pytest.raises(InvalidTemplate) as caught:
        create_update_template(session, None, _with(conditions={"team_ids": [team_id + 5], "labels": ["gold"]}))

    assert _reasons(caught.value.problems) == [
        "a template named 'Waiting on you' already exists",
        f"team_ids: team {team_id + 5} does not exist",
        "labels: label 'gold' does not exist",
    ]


def test_update_validates_merged_fields(state, conversation):
    session, _ = conversation
    template = create_update_template(session, None, VALID)
    session.commit()

    with pytest.raises(InvalidTemplate):
        update_update_template(session, template, {"email_body": "{{ nope }}"})
    session.rollback()
    update_update_template(session, template, {"name": "  Renamed  ", "enabled": True})
    session.commit()

    assert template.name == "Renamed"
    assert template.enabled is True
    assert template.email_body == VALID["email_body"]


def test_enabled_at_is_set_each_time_a_template_is_enabled(state, conversation):
    session, _ = conversation
    template = create_update_template(session, None, VALID)
    session.commit()
    assert template.enabled_at is None

    update_update_template(session, template, {"enabled": True})
    session.commit()
    first = template.enabled_at
    assert first is not None

    update_update_template(session, template, {"name": "Renamed", "enabled": True})
    session.commit()
    assert template.enabled_at == first  # still enabled: unchanged

    update_update_template(session, template, {"enabled": False})
    update_update_template(session, template, {"enabled": True})
    session.commit()
    assert template.enabled_at > first


def test_enabled_templates_by_trigger(state, conversation):
    session, _ = conversation
    first = create_update_template(session, None, _with(name="First", enabled=True))
    create_update_template(session, None, _with(name="Second"))
    third = create_update_template(session, None, _with(name="Third", enabled=True))
    create_update_template(session, None, _with(name="Other", trigger="resolved", trigger_params={}, enabled=True))
    session.commit()

    found = enabled_templates(session, "status_changed")

    assert [template.id for template in found] == [first.id, third.id]
    assert all(isinstance(template, UpdateTemplate) for template in found)
    assert enabled_templates(session, "periodic") == []


def test_new_template_starts_disabled(state, conversation):
    session, _ = conversation
    template = create_update_template(session, None, VALID)
    session.commit()
    session.refresh(template)

    assert template.enabled is False
    assert template.created_at.tzinfo is not None


def test_names_differing_in_case_collide(state, conversation):
    session, _ = conversation
    create_update_template(session, None, _with())
    session.commit()

    with pytest.raises(InvalidTemplate) as caught:
        create_update_template(session, None, _with(name="  WAITING ON YOU "))

    assert _reasons(caught.value.problems) == ["a template named 'Waiting on you' already exists"]
