"""Proactive update templates: placeholders, validation, sandboxed rendering and conditions.

A template's email subject, email body and WhatsApp body are Jinja2 source written by
managers. They run in Jinja2's ``SandboxedEnvironment``, so they reach only the placeholder
values, never Python internals (``{{ ''.__class__ }}`` raises ``SecurityError``). Undefined
names raise instead of rendering empty (``StrictUndefined``), and autoescaping is off because
the output is plain text: an email's text part and a WhatsApp message.

``validate_template`` runs when a template is saved. It walks the parsed Jinja AST to find
placeholders outside the catalogue, filters and tests Jinja does not have, and constructs a
status update does not need (includes, macros, nested or recursive loops). The last rule keeps
the work of one render bounded. Each finding is a ``TemplateProblem`` with the field, the
line within that field, and the reason, so a typo like ``{{ custmer_name }}`` is reported
when the manager saves, not when the scheduler sends.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    filters,
    meta,
    nodes,
    pass_environment,
    pass_eval_context,
)
from jinja2.runtime import Undefined
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from channels.whatsapp.template_values import clean_value
from inbox.audit import Action, record_audit
from inbox.errors import InboxError, NotFound
from inbox.models import (
    Agent,
    Conversation,
    ConversationStatus,
    Label,
    Priority,
    ProactiveResult,
    ProactiveSend,
    Team,
    UpdateTemplate,
    UpdateTrigger,
    utcnow,
)
from inbox.serialize import isoformat

# ---- The placeholder catalogue ------------------------------------------------------------


@dataclass(frozen=True)
class Placeholder:
    """A value that templates may use, with the sample value that previews show."""

    name: str
    description: str
    example: str | int


PLACEHOLDERS: dict[str, Placeholder] = {
    placeholder.name: placeholder
    for placeholder in (
        Placeholder("customer_name", "The contact's name, or \"there\" when it is not known.", "Maria"),
        Placeholder("reference", "The conversation's reference, for example #1042.", "#1042"),
        Placeholder("status", "The conversation's status in words, for example \"waiting for your reply\".",
                    "being worked on"),
        Placeholder("agent_first_name", "The assigned agent's first name; empty while nobody is assigned.", "Sam"),
        Placeholder("queue_position", "How many conversations are ahead of this one, plus one (a number).", 3),
        Placeholder("first_response_estimate",
                    "The expected wait for the first agent reply, for example \"about 2 hours\"; "
                    "empty when there is too little history or an agent has replied.", "about 2 hours"),
        Placeholder("resolution_estimate",
                    "The expected time until the conversation is resolved, for example \"about 1 day\"; "
                    "empty when there is too little history.", "about 1 day"),
        Placeholder("reply_to",
                    "Where the customer can answer: the conversation's reply address for email, "
                    "a wa.me link for WhatsApp.", "support+c1042.5f2a9c@shop.example"),
    )
}

# ---- Triggers, their parameters and the conditions ------------------------------------------

AGENT_STATUSES = tuple(
    status.value for status in ConversationStatus if status is not ConversationStatus.CLOSED
)
PRIORITIES = tuple(priority.value for priority in Priority)
CHANNEL_KINDS = ("email", "whatsapp")
# The maximum wait a trigger accepts: 30 days. A longer one is most likely a unit mistake.
MAX_HOURS = 24 * 30


@dataclass(frozen=True)
class Param:
    """One trigger parameter: its kind ("hours", "status" or "bool") and whether it is required."""

    kind: str
    required: bool = False
    minimum: float = 0.0


TRIGGER_PARAMS: dict[str, dict[str, Param]] = {
    UpdateTrigger.STATUS_CHANGED.value: {"to_status": Param("status", required=True), "from_status": Param("status")},
    UpdateTrigger.ASSIGNED.value: {},
    UpdateTrigger.NO_AGENT_REPLY.value: {"hours": Param("hours", required=True), "business_hours": Param("bool")},
    UpdateTrigger.QUEUE_WAIT.value: {"hours": Param("hours", required=True), "business_hours": Param("bool")},
    UpdateTrigger.FIRST_RESPONSE_AT_RISK.value: {
        "hours": Param("hours", required=True),
        "business_hours": Param("bool"),
    },
    UpdateTrigger.PERIODIC.value: {
        "every_hours": Param("hours", required=True, minimum=1.0),
        "business_hours": Param("bool"),
    },
    UpdateTrigger.RESOLVED.value: {},
}
TRIGGERS = tuple(TRIGGER_PARAMS)

CONDITION_KEYS = ("channels", "team_ids", "priorities", "labels", "statuses")

# ---- Limits -------------------------------------------------------------------------------

MAX_NAME = 120
MAX_SOURCE = {"email_subject": 998, "email_body": 20_000, "whatsapp_body": 4_096}
# A rendered field longer than this is an error, whatever produced it.
MAX_RENDERED = 50_000
# ``range()`` in a template yields at most this many numbers.
MAX_RANGE = 1_000
MAX_EXPONENT = 100
# The largest whole number a template may compute, in bits (about 1,200 decimal digits).
MAX_INT_BITS = 4_096
# The largest width or precision of a padding filter, method or format.
MAX_WIDTH = MAX_RENDERED
MAX_CONDITION_VALUES = 100
MAX_WHATSAPP_VARIABLES = 20
BODY_FIELDS = ("email_subject", "email_body", "whatsapp_body")
FIELDS = (
    "name", "trigger", "trigger_params", "conditions", *BODY_FIELDS,
    "whatsapp_content_sid", "whatsapp_variables", "enabled",
)

_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
_VARIABLE_NUMBER = re.compile(r"^[1-9][0-9]?$")


@dataclass(frozen=True)
class TemplateProblem:
    """One reason a template cannot be saved: the field, the line in it (1-based) and why."""

    field: str
    line: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "line": self.line, "reason": self.reason}


class InvalidTemplate(InboxError):
    """A template failed validation; ``problems`` lists every finding."""

    code = "invalid_template"

    def __init__(self, problems: list[TemplateProblem]):
        first = problems[0]
        where = f" (line {first.line})" if first.line else ""
        super().__init__(f"The template is invalid: {first.field}{where}: {first.reason}", field=first.field)
        self.problems = problems


class TemplateRenderError(InboxError):
    """A template failed to render with the given context."""

    code = "template_render_failed"

    def __init__(self, field: str, line: int | None, reason: str):
        where = f" line {line}" if line else ""
        super().__init__(f"{field}{where}: {reason}", field=field)
        self.problem = TemplateProblem(field, line, reason)


@dataclass(frozen=True)
class RenderedUpdate:
    """A template rendered for one conversation. Empty strings stand for fields left empty."""

    subject: str
    email_body: str
    whatsapp_body: str
    # The approved template's variable numbers with their values, ready for the content API.
    whatsapp_variables: dict[str, str]


class TemplateFields(Protocol):
    email_subject: str
    email_body: str
    whatsapp_body: str
    whatsapp_variables: dict[str, str]
    conditions: dict[str, Any]


@dataclass(frozen=True)
class DraftTemplate:
    """Template fields that are not saved, such as an editor's unsaved changes for a preview."""

    email_subject: str = ""
    email_body: str = ""
    whatsapp_body: str = ""
    whatsapp_variables: dict[str, str] = dataclasses.field(default_factory=dict)
    conditions: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> DraftTemplate:
        return cls(
            email_subject=fields.get("email_subject") or "",
            email_body=fields.get("email_body") or "",
            whatsapp_body=fields.get("whatsapp_body") or "",
            whatsapp_variables=dict(fields.get("whatsapp_variables") or {}),
            conditions=dict(fields.get("conditions") or {}),
        )


# ---- The sandbox --------------------------------------------------------------------------


class _LimitedCodeGenerator(CodeGenerator):
    """Code generator that compiles ``a ~ b`` to a join that rejects results over ``MAX_RENDERED``."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.limited_concat((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox with limits on everything that can build a huge value.

    The output cap applies only to what a render yields, so each way to make a large
    string or number is bounded where it is made: operators, concatenation, padding and
    replacing methods and filters. ``str.format`` is not offered at all.
    """

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} exceeds the limit of {MAX_EXPONENT}")
        if operator == "**" and _is_int(left) and _is_int(right) and right > 0:
            _check_int_bits(max(left.bit_length(), 1) * right)
        if operator == "*":
            if _is_int(left) and _is_int(right):
                _check_int_bits(left.bit_length() + right.bit_length())
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                    if len(sequence) * count > MAX_RENDERED:
                        raise SecurityError(f"repeating a value makes more than {MAX_RENDERED} items")
        if operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        if operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            _check_length(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        if _is_str_method(value) and value.__name__ in ("format", "format_map"):
            def rejected(*args: Any, **kwargs: Any) -> str:
                raise SecurityError(f"str.{value.__name__}() is not supported: use placeholders and filters")
            return rejected
        return None

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if _is_str_method(__obj):
            _check_str_method(__obj.__self__, __obj.__name__, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str):
            _check_length(len(result))
        return result

    def limited_concat(self, values: tuple[Any, ...]) -> str:
        texts = [str(value) for value in values]
        _check_length(sum(map(len, texts)))
        return "".join(texts)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_method(value: object) -> bool:
    return isinstance(getattr(value, "__self__", None), str) and callable(value)


def _check_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise SecurityError(f"the number would have more than {MAX_INT_BITS} bits")


def _check_length(length: int) -> None:
    if length > MAX_RENDERED:
        raise SecurityError(f"the text would be longer than {MAX_RENDERED} characters")


def _check_width(value: object) -> None:
    if _is_int(value) and abs(value) > MAX_WIDTH:  # type: ignore[arg-type]
        raise SecurityError(f"a width of {value} exceeds the limit of {MAX_WIDTH}")


# One "%" conversion: an optional mapping key, then flags, width and precision.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?([^a-zA-Z%]*)")


def _check_percent_format(text: str) -> None:
    """Reject a printf-style format whose width or precision is huge or taken from the values."""
    for spec in _PERCENT_SPEC.findall(text):
        if "*" in spec:
            raise SecurityError("a width or precision from the values (*) is not supported")
        for digits in re.findall(r"[0-9]+", spec):
            _check_width(int(digits))


def _check_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Reject a str method call whose result would be huge, before it is made."""
    if name in ("center", "ljust", "rjust", "zfill", "expandtabs"):
        for value in (*args, *kwargs.values()):
            _check_width(value)
        if name == "expandtabs" and args and _is_int(args[0]):
            _check_length(len(text) + text.count("\t") * args[0])
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _check_length(_replaced_length(text, args[0], args[1]))
    elif name == "join" and args:
        items = list(args[0])
        _check_length(len(text) * max(len(items) - 1, 0) + sum(len(str(item)) for item in items))


def _replaced_length(text: str, old: str, new: str) -> int:
    count = text.count(old) if old else len(text) + 1
    return len(text) + count * (len(new) - len(old))


def _limited_center(value: Any, width: int = 80) -> str:
    _check_width(width)
    return filters.do_center(value, width)


def _limited_indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_width(width)
    pad = width if isinstance(width, int) else len(str(width))
    _check_length(len(str(value)) + (str(value).count("\n") + 1) * pad)
    return filters.do_indent(value, width, first, blank)


def _limited_wordwrap(environment: Any, value: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    _check_width(width)
    _check_length(len(str(value)) * 2)
    return filters.do_wordwrap(environment, value, width, *args, **kwargs)


def _limited_replace(eval_ctx: Any, value: str, old: str, new: str, count: int | None = None) -> str:
    _check_length(_replaced_length(str(value), str(old), str(new)))
    return filters.do_replace(eval_ctx, value, old, new, count)


def _limited_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value))
    return filters.do_format(value, *args, **kwargs)


def _limited_join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    _check_length(len(str(d)) * max(len(items) - 1, 0) + sum(len(str(item)) for item in items))
    return filters.do_join(eval_ctx, items, d, attribute)


_limited_wordwrap = pass_environment(_limited_wordwrap)
_limited_replace = pass_eval_context(_limited_replace)
_limited_join = pass_eval_context(_limited_join)
_LIMITED_FILTERS = {
    "center": _limited_center, "indent": _limited_indent, "wordwrap": _limited_wordwrap,
    "replace": _limited_replace, "format": _limited_format, "join": _limited_join,
}


def _plain_value(value: Any) -> Any:
    """Let only text-like values into the output; a method or a Jinja object is a mistake."""
    if value is None or isinstance(value, (str, int, float, list, tuple, dict, Undefined)):
        # An undefined value goes on to raise its own "is undefined" error.
        return value
    if callable(value):
        raise TypeError("a method was written without its call: add () after its name")
    raise TypeError(f"a {type(value).__name__} cannot be written into the message")


def _limited_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} numbers")
    return numbers


@functools.cache
def _environment() -> _Sandbox:
    environment = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=_plain_value,
    )
    environment.globals = {"range": _limited_range}
    environment.filters.update(_LIMITED_FILTERS)
    return environment


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> Any:
    return _environment().from_string(source)


# ---- Validation ---------------------------------------------------------------------------


def validate_template(fields: Mapping[str, Any], *, session: Session | None = None) -> list[TemplateProblem]:
    """Check a whole template's fields and return every problem found (none means valid).

    ``fields`` has the keys of ``FIELDS``; missing keys count as empty. With ``session``,
    condition team ids and labels must also exist, and the name must be unused by another
    template (``fields["id"]``, when given, is the template being changed).
    """
    problems: list[TemplateProblem] = []
    for key in fields:
        if key not in FIELDS and key != "id":
            problems.append(TemplateProblem(str(key), None, f"unknown field {key!r}"))

    problems += _check_name(fields.get("name"), session, fields.get("id"))
    problems += _check_trigger(fields.get("trigger"), fields.get("trigger_params"))
    problems += _check_conditions(fields.get("conditions"), session)
    for field in BODY_FIELDS:
        problems += check_source(field, fields.get(field))
    problems += _check_whatsapp(fields)
    problems += _check_something_to_send(fields)
    if "enabled" in fields and not isinstance(fields["enabled"], bool):
        problems.append(TemplateProblem("enabled", None, "must be true or false"))
    return problems


def _check_name(name: object, session: Session | None, template_id: object) -> list[TemplateProblem]:
    if not isinstance(name, str) or not name.strip():
        return [TemplateProblem("name", None, "a name is required")]
    if len(name.strip()) > MAX_NAME:
        return [TemplateProblem("name", None, f"is longer than {MAX_NAME} characters")]
    if session is not None:
        # Compared without case in Python, because SQLite's lower() folds ASCII letters only.
        # A workspace has few templates, so reading every name is cheap.
        query = select(UpdateTemplate.name)
        if isinstance(template_id, int):
            query = query.where(UpdateTemplate.id != template_id)
        folded = name.strip().casefold()
        existing = next((other for other in session.scalars(query) if other.casefold() == folded), None)
        if existing is not None:
            return [TemplateProblem("name", None, f"a template named {existing!r} already exists")]
    return []


def _check_trigger(trigger: object, params: object) -> list[TemplateProblem]:
    if trigger not in TRIGGER_PARAMS:
        return [TemplateProblem("trigger", None, f"unknown trigger {trigger!r}: use one of {', '.join(TRIGGERS)}")]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return [TemplateProblem("trigger_params", None, "must be an object")]

    problems = []
    specs = TRIGGER_PARAMS[str(trigger)]
    for key, value in params.items():
        spec = specs.get(key)
        if spec is None:
            allowed = ", ".join(specs) or "none"
            problems.append(TemplateProblem("trigger_params", None,
                                            f"unknown parameter {key!r} for {trigger}: allowed are {allowed}"))
            continue
        reason = _check_param(spec, value)
        if reason:
            problems.append(TemplateProblem("trigger_params", None, f"{key}: {reason}"))
    for key, spec in specs.items():
        if spec.required and key not in params:
            problems.append(TemplateProblem("trigger_params", None, f"{key} is required for {trigger}"))
    return problems


def _check_param(spec: Param, value: object) -> str | None:
    if spec.kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if spec.kind == "status":
        return None if value in AGENT_STATUSES else f"must be one of {', '.join(AGENT_STATUSES)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number of hours"
    if not spec.minimum <= value <= MAX_HOURS or value == 0:
        low = f"at least {spec.minimum:g}" if spec.minimum else "more than 0"
        return f"must be {low} and at most {MAX_HOURS}"
    return None


def _check_conditions(conditions: object, session: Session | None) -> list[TemplateProblem]:
    if conditions is None:
        return []
    if not isinstance(conditions, dict):
        return [TemplateProblem("conditions", None, "must be an object")]

    allowed_values: dict[str, tuple[str, ...]] = {
        "channels": CHANNEL_KINDS, "priorities": PRIORITIES, "statuses": AGENT_STATUSES,
    }
    problems = []
    for key, values in conditions.items():
        if key not in CONDITION_KEYS:
            problems.append(TemplateProblem("conditions", None,
                                            f"unknown condition {key!r}: use {', '.join(CONDITION_KEYS)}"))
            continue
        if not isinstance(values, list) or len(values) > MAX_CONDITION_VALUES:
            problems.append(TemplateProblem("conditions", None,
                                            f"{key} must be a list of at most {MAX_CONDITION_VALUES} values"))
            continue
        if key in allowed_values:
            for value in values:
                if value not in allowed_values[key]:
                    problems.append(TemplateProblem("conditions", None,
                                                    f"{key}: unknown value {value!r}: use {', '.join(allowed_values[key])}"))
        elif key == "team_ids":
            problems += _check_team_ids(values, session)
        else:
            problems += _check_labels(values, session)
    return problems


def _check_team_ids(values: list[Any], session: Session | None) -> list[TemplateProblem]:
    if not all(isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in values):
        return [TemplateProblem("conditions", None, "team_ids must be team ids (positive integers)")]
    if session is None or not values:
        return []
    found = set(session.scalars(select(Team.id).where(Team.id.in_(values))))
    return [TemplateProblem("conditions", None, f"team_ids: team {value} does not exist")
            for value in values if value not in found]


def _check_labels(values: list[Any], session: Session | None) -> list[TemplateProblem]:
    if not all(isinstance(value, str) and value.strip() for value in values):
        return [TemplateProblem("conditions", None, "labels must be label names")]
    if session is None or not values:
        return []
    keys = {value.strip().casefold() for value in values}
    found = set(session.scalars(select(Label.name_key).where(Label.name_key.in_(keys))))
    return [TemplateProblem("conditions", None, f"labels: label {value!r} does not exist")
            for value in values if value.strip().casefold() not in found]


def check_source(field: str, source: object) -> list[TemplateProblem]:
    """Parse one field's Jinja source and return its problems: syntax, names and constructs."""
    if source is None or source == "":
        return []
    if not isinstance(source, str):
        return [TemplateProblem(field, None, "must be text")]
    if len(source) > MAX_SOURCE[field]:
        return [TemplateProblem(field, None, f"is longer than {MAX_SOURCE[field]} characters")]
    if field == "email_subject" and ("\n" in source or "\r" in source):
        return [TemplateProblem(field, 1, "a subject must be one line")]

    environment = _environment()
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        return [TemplateProblem(field, error.lineno, error.message or "invalid syntax")]

    problems = _check_constructs(field, tree)
    if problems:
        return problems
    try:
        problems = _check_names(field, tree)
    except TemplateSyntaxError as error:
        # Raised for what compiling finds, such as a name assigned twice in one scope.
        return [TemplateProblem(field, error.lineno, error.message or "invalid template")]
    if problems:
        return problems

    # A trial render with the sample values finds what only running shows, for example
    # arithmetic on text or an attribute the sandbox blocks.
    try:
        _render_field(field, source, sample_values())
    except TemplateRenderError as error:
        problems.append(error.problem)
    return problems


def _check_names(field: str, tree: nodes.Template) -> list[TemplateProblem]:
    undeclared = meta.find_undeclared_variables(tree)
    problems = []
    seen: set[tuple[str, int]] = set()
    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or node.name not in undeclared or node.name in PLACEHOLDERS:
            continue
        if node.name in _environment().globals or (node.name, node.lineno) in seen:
            continue
        seen.add((node.name, node.lineno))
        reason = f"unknown placeholder {node.name!r}"
        close = difflib.get_close_matches(node.name, PLACEHOLDERS, n=1)
        if close:
            reason += f": did you mean {close[0]!r}?"
        problems.append(TemplateProblem(field, node.lineno, reason))
    return problems


def _check_constructs(field: str, tree: nodes.Template) -> list[TemplateProblem]:
    environment = _environment()
    problems = []
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        problems.append(TemplateProblem(field, node.lineno, "templates cannot include or import other templates"))
    for node in tree.find_all((nodes.Macro, nodes.CallBlock)):
        problems.append(TemplateProblem(field, node.lineno, "macros are not supported in update templates"))
    for node in tree.find_all(nodes.For):
        if node.recursive:
            problems.append(TemplateProblem(field, node.lineno, "recursive loops are not supported"))
        if any(True for _ in node.find_all(nodes.For)):
            problems.append(TemplateProblem(field, node.lineno, "a loop inside a loop is not supported"))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attribute = node.attr if isinstance(node, nodes.Getattr) else _constant(node.arg)
        if isinstance(attribute, str) and attribute.startswith("_"):
            problems.append(TemplateProblem(field, node.lineno, f"access to the attribute {attribute!r} is not allowed"))
    for node in tree.find_all(nodes.Filter):
        if node.name not in environment.filters:
            problems.append(TemplateProblem(field, node.lineno, f"unknown filter {node.name!r}"))
    for node in tree.find_all(nodes.Test):
        if node.name not in environment.tests:
            problems.append(TemplateProblem(field, node.lineno, f"unknown test {node.name!r}"))
    return problems


def _constant(node: nodes.Node) -> object:
    return node.value if isinstance(node, nodes.Const) else None


def _check_whatsapp(fields: Mapping[str, Any]) -> list[TemplateProblem]:
    problems = []
    content_sid = fields.get("whatsapp_content_sid")
    if content_sid not in (None, "") and (not isinstance(content_sid, str) or not _CONTENT_SID.match(content_sid)):
        problems.append(TemplateProblem("whatsapp_content_sid", None,
                                        "must be a Twilio Content SID: HX followed by 32 hexadecimal digits"))

    variables = fields.get("whatsapp_variables")
    if variables in (None, {}):
        return problems
    if not isinstance(variables, dict) or len(variables) > MAX_WHATSAPP_VARIABLES:
        problems.append(TemplateProblem("whatsapp_variables", None,
                                        f"must map at most {MAX_WHATSAPP_VARIABLES} variable numbers to placeholder names"))
        return problems
    if not content_sid:
        problems.append(TemplateProblem("whatsapp_variables", None, "variables need a WhatsApp content SID"))
    for number, name in variables.items():
        if not _VARIABLE_NUMBER.match(str(number)):
            problems.append(TemplateProblem("whatsapp_variables", None,
                                            f"variable {number!r} must be a number from 1 to 99"))
        if name not in PLACEHOLDERS:
            problems.append(TemplateProblem("whatsapp_variables", None,
                                            f"variable {number}: unknown placeholder {name!r}"))
    return problems


def _check_something_to_send(fields: Mapping[str, Any]) -> list[TemplateProblem]:
    if fields.get("email_body") and not fields.get("email_subject"):
        return [TemplateProblem("email_subject", None, "an email body needs a subject")]
    if fields.get("email_subject") and not fields.get("email_body"):
        return [TemplateProblem("email_body", None, "an email subject needs a body")]
    if not any(fields.get(key) for key in ("email_body", "whatsapp_body", "whatsapp_content_sid")):
        return [TemplateProblem("email_body", None,
                                "write an email body, a WhatsApp body or a WhatsApp content SID")]
    return []


# ---- Rendering ----------------------------------------------------------------------------


def sample_values() -> dict[str, Any]:
    """Return every placeholder with its sample value, as previews without a conversation show."""
    return {name: placeholder.example for name, placeholder in PLACEHOLDERS.items()}


def render_update(template: TemplateFields, context: Mapping[str, Any]) -> RenderedUpdate:
    """Render a template's fields with ``context`` (placeholder name to value).

    The subject comes back on one line with its whitespace collapsed. WhatsApp variables come
    back as ``channels.whatsapp.template_values.clean_value`` makes them (one line, no control
    characters, single spaces, at most 1,024 characters), and "-" where the value is empty,
    because WhatsApp rejects empty variables. Raises ``TemplateRenderError`` with the field
    and line of the first failure.
    """
    subject = " ".join(_render_field("email_subject", template.email_subject, context).split())
    email_body = _render_field("email_body", template.email_body, context)
    whatsapp_body = _render_field("whatsapp_body", template.whatsapp_body, context)

    variables = {}
    for number, name in sorted((template.whatsapp_variables or {}).items(), key=lambda item: int(item[0])):
        if name not in context:
            raise TemplateRenderError("whatsapp_variables", None, f"variable {number}: no value for {name!r}")
        variables[str(number)] = clean_value(str(context[name])) or "-"
    return RenderedUpdate(subject, email_body, whatsapp_body, variables)


def _render_field(field: str, source: str | None, context: Mapping[str, Any]) -> str:
    if not source:
        return ""
    try:
        compiled = _compile(source)
    except TemplateSyntaxError as error:
        raise TemplateRenderError(field, error.lineno, error.message or "invalid syntax") from error
    except TemplateError as error:
        raise TemplateRenderError(field, None, str(error)) from error

    size = 0
    chunks = []
    try:
        for chunk in compiled.generate(dict(context)):
            size += len(chunk)
            if size > MAX_RENDERED:
                raise TemplateRenderError(field, None, f"the result is longer than {MAX_RENDERED} characters")
            chunks.append(chunk)
    except TemplateRenderError:
        raise
    except SecurityError as error:
        raise TemplateRenderError(field, _template_line(error.__traceback__), f"not allowed: {error}") from error
    except MemoryError as error:
        raise TemplateRenderError(field, _template_line(error.__traceback__), "the template needs too much memory") from error
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
            RecursionError) as error:
        raise TemplateRenderError(field, _template_line(error.__traceback__), str(error) or type(error).__name__) from error
    return "".join(chunks).strip()


def _template_line(traceback: TracebackType | None) -> int | None:
    """Return the template line of the innermost template frame; Jinja rewrites those frames."""
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


# ---- Conditions and look-ups --------------------------------------------------------------


def template_applies(template: TemplateFields, conversation: Conversation) -> bool:
    """Return whether ``conversation`` meets every condition of ``template``.

    A missing or empty list matches every conversation. ``labels`` matches a conversation
    with any one of the labels, compared without regard to case.
    """
    conditions = template.conditions or {}
    if conditions.get("channels") and conversation.channel.kind not in conditions["channels"]:
        return False
    if conditions.get("team_ids") and conversation.team_id not in conditions["team_ids"]:
        return False
    if conditions.get("priorities") and conversation.priority not in conditions["priorities"]:
        return False
    if conditions.get("statuses") and conversation.status not in conditions["statuses"]:
        return False
    if conditions.get("labels"):
        label_keys = {name.strip().casefold() for name in conditions["labels"]}
        if not any(label.name_key in label_keys for label in conversation.labels):
            return False
    return True


def enabled_templates(session: Session, trigger: str) -> list[UpdateTemplate]:
    """Return the enabled templates of ``trigger``, oldest first."""
    return list(
        session.scalars(
            select(UpdateTemplate)
            .where(UpdateTemplate.trigger == trigger, UpdateTemplate.enabled.is_(True))
            .order_by(UpdateTemplate.id)
        )
    )


def list_update_templates(session: Session) -> list[UpdateTemplate]:
    return list(session.scalars(select(UpdateTemplate).order_by(func.lower(UpdateTemplate.name), UpdateTemplate.id)))


def get_update_template_or_404(session: Session, template_id: int) -> UpdateTemplate:
    """Return the template, or raise ``NotFound``."""
    template = session.get(UpdateTemplate, template_id)
    if template is None:
        raise NotFound(f"Update template {template_id} was not found.", field="id")
    return template


# ---- Saving -------------------------------------------------------------------------------


def template_fields(template: UpdateTemplate) -> dict[str, Any]:
    """Return the editable fields of a stored template."""
    return {
        "name": template.name,
        "trigger": template.trigger,
        "trigger_params": dict(template.trigger_params or {}),
        "conditions": dict(template.conditions or {}),
        "email_subject": template.email_subject,
        "email_body": template.email_body,
        "whatsapp_body": template.whatsapp_body,
        "whatsapp_content_sid": template.whatsapp_content_sid,
        "whatsapp_variables": dict(template.whatsapp_variables or {}),
        "enabled": template.enabled,
    }


def template_to_dict(template: UpdateTemplate) -> dict[str, Any]:
    return {
        "id": template.id,
        **template_fields(template),
        "created_by": {"id": template.created_by.id, "name": template.created_by.name} if template.created_by else None,
        "created_at": isoformat(template.created_at),
        "updated_at": isoformat(template.updated_at),
        "enabled_at": isoformat(template.enabled_at),
    }


def normalize_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``fields`` with names and subjects trimmed and empty condition lists dropped."""
    cleaned = dict(fields)
    for key in ("name", "email_subject"):
        if isinstance(cleaned.get(key), str):
            cleaned[key] = cleaned[key].strip()
    if cleaned.get("whatsapp_content_sid") == "":
        cleaned["whatsapp_content_sid"] = None
    for key in ("trigger_params", "conditions", "whatsapp_variables"):
        if cleaned.get(key) is None and key in cleaned:
            cleaned[key] = {}
    if isinstance(cleaned.get("conditions"), dict):
        cleaned["conditions"] = {key: value for key, value in cleaned["conditions"].items() if value != []}
    if isinstance(cleaned.get("whatsapp_variables"), dict):
        cleaned["whatsapp_variables"] = {str(key): value for key, value in cleaned["whatsapp_variables"].items()}
    return cleaned


def create_update_template(session: Session, actor: Agent | None, fields: Mapping[str, Any]) -> UpdateTemplate:
    """Validate ``fields`` and add a new template to the session. Raises ``InvalidTemplate``."""
    cleaned = normalize_fields(fields)
    problems = validate_template(cleaned, session=session)
    if problems:
        raise InvalidTemplate(problems)
    template = UpdateTemplate(created_by=actor)
    _assign(template, cleaned)
    session.add(template)
    session.flush()
    record_audit(session, actor, Action.UPDATE_TEMPLATE_CREATED, "update_template", template.id, template.name,
                 {"trigger": template.trigger, "enabled": template.enabled})
    return template


def update_update_template(
    session: Session, template: UpdateTemplate, changes: Mapping[str, Any], actor: Agent | None = None
) -> UpdateTemplate:
    """Apply ``changes`` (any subset of the fields) after validating the whole result.

    Raises ``InvalidTemplate``; the template is left unchanged then. The audit log gets the
    names of the fields that changed (never their text) and whether it was enabled or disabled.
    ``actor`` None stands for the command line.
    """
    before = template_fields(template)
    merged = {**before, **normalize_fields(changes), "id": template.id}
    problems = validate_template(merged, session=session)
    if problems:
        raise InvalidTemplate(problems)
    merged.pop("id")
    _assign(template, merged)
    session.flush()

    after = template_fields(template)
    changed = sorted(key for key in after if key != "enabled" and after[key] != before[key])
    if changed:
        record_audit(session, actor, Action.UPDATE_TEMPLATE_CHANGED, "update_template", template.id, template.name,
                     {"fields": changed})
    if after["enabled"] != before["enabled"]:
        action = Action.UPDATE_TEMPLATE_ENABLED if after["enabled"] else Action.UPDATE_TEMPLATE_DISABLED
        record_audit(session, actor, action, "update_template", template.id, template.name)
    return template


def _assign(template: UpdateTemplate, fields: Mapping[str, Any]) -> None:
    template.name = fields["name"]
    template.trigger = fields["trigger"]
    template.trigger_params = dict(fields.get("trigger_params") or {})
    template.conditions = dict(fields.get("conditions") or {})
    template.email_subject = fields.get("email_subject") or ""
    template.email_body = fields.get("email_body") or ""
    template.whatsapp_body = fields.get("whatsapp_body") or ""
    template.whatsapp_content_sid = fields.get("whatsapp_content_sid") or None
    template.whatsapp_variables = dict(fields.get("whatsapp_variables") or {})
    enabled = bool(fields.get("enabled", template.enabled or False))
    if enabled and not template.enabled:
        # The sweep looks back no further than this, so nothing from while it was off is sent.
        template.enabled_at = utcnow()
    template.enabled = enabled


def delete_update_template(session: Session, template: UpdateTemplate, actor: Agent | None = None) -> int:
    """Delete the template and log it; return how many of its held updates were called off.

    Its update log rows stay, with the template's name. Updates held for quiet hours are
    marked skipped in the same transaction, so none of them goes out later. Disabling the
    template instead keeps it for later.
    """
    record_audit(session, actor, Action.UPDATE_TEMPLATE_DELETED, "update_template", template.id, template.name)
    now = utcnow()
    called_off = session.execute(
        update(ProactiveSend)
        .where(ProactiveSend.template_id == template.id, ProactiveSend.result == ProactiveResult.DEFERRED.value)
        .values(
            result=ProactiveResult.SKIPPED.value,
            reason="template_deleted: the template was deleted while the update waited",
            scheduled_for=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.delete(template)
    session.flush()
    return called_off
