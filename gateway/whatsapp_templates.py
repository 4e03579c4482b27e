"""Approved WhatsApp templates: cached lists from the providers, and template replies.

Agents pick from the templates that WhatsApp approved for the channel: on Twilio channels
those of the Twilio account, read through the SDK from the Content API
(``channels.whatsapp.list_content_templates``), and on Meta Cloud API channels those of the
WhatsApp Business Account named by the channel's ``waba_id`` setting, read from the Graph
API (``channels.whatsapp.meta.list_message_templates``). Each list is kept for
``SWITCHBOARD_WHATSAPP_TEMPLATE_REFRESH`` seconds. When the provider cannot be reached, the
last list is served with the error, so a short outage does not take the picker away.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.whatsapp.meta import MessageTemplate, MessageTemplatesError, MetaSettings, list_message_templates
from channels.whatsapp.twilio import (
    ContentApiError,
    ContentTemplate,
    TwilioSettings,
    list_content_templates,
    render_template,
    template_placeholders,
)
from channels.whatsapp.template_values import MAX_CONSECUTIVE_SPACES, MAX_VALUE_LENGTH, value_problem
from inbox.errors import InvalidInput
from inbox.models import utcnow
from inbox.replies import TemplateContent
from inbox.serialize import isoformat

log = logging.getLogger(__name__)

APPROVED = "approved"
# Meta's review status of a template that may be sent.
META_APPROVED = "APPROVED"
_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
# Meta's template names are lower-case letters, digits and underscores, and its language
# codes look like en, en_US or zh_Hant_HK.
_META_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_META_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8}){0,2}$")


@dataclass(frozen=True)
class TemplateList:
    """The approved templates of one account, when they were read, and the last read's error.

    ``templates`` are ``ContentTemplate`` items for Twilio and ``MessageTemplate`` items for Meta.
    """

    templates: Sequence[Any]
    fetched_at: datetime
    error: str | None = None


class TemplateCatalog:
    """Approved templates per Twilio account and per Meta business account, read again once
    ``refresh_seconds`` have passed."""

    def __init__(
        self,
        refresh_seconds: float,
        fetch: Callable[[TwilioSettings], list[ContentTemplate]] = list_content_templates,
        clock: Callable[[], float] = time.monotonic,
        fetch_meta: Callable[[MetaSettings, str], list[MessageTemplate]] = list_message_templates,
    ):
        self.refresh_seconds = refresh_seconds
        self.fetch = fetch
        self.fetch_meta = fetch_meta
        self.clock = clock
        self._lock = threading.Lock()
        # A provider's account key -> (monotonic time of the read, the list)
        self._cache: dict[Hashable, tuple[float, TemplateList]] = {}

    def approved(self, settings: TwilioSettings, *, refresh: bool = False) -> TemplateList:
        """Return the Twilio account's approved templates, from the cache while it is fresh.

        Raises ``ContentApiError`` when Twilio cannot be read and nothing is cached.
        """

        def read() -> list[ContentTemplate]:
            templates = self.fetch(settings)
            approved = [t for t in templates if t.whatsapp_status == APPROVED]
            log.info("read %s WhatsApp templates from Twilio, %s of them approved", len(templates), len(approved))
            return approved

        key = ("twilio", settings.account_sid, settings.api_base_url)
        return self._cached(key, read, ContentApiError, refresh)

    def find(self, settings: TwilioSettings, content_sid: str) -> ContentTemplate | None:
        """Return the approved template ``content_sid``, reading the list again once when the
        cached one lacks it (a template approved a moment ago)."""
        for refresh in (False, True):
            for template in self.approved(settings, refresh=refresh).templates:
                if template.sid == content_sid:
                    return template
        return None

    def approved_meta(self, settings: MetaSettings, waba_id: str, *, refresh: bool = False) -> TemplateList:
        """Return the approved templates of the WhatsApp Business Account ``waba_id``.

        Raises ``MessageTemplatesError`` when the Graph API cannot be read and nothing is cached.
        """

        def read() -> list[MessageTemplate]:
            templates = self.fetch_meta(settings, waba_id)
            approved = [t for t in templates if t.status == META_APPROVED]
            log.info("read %s templates of WABA %s, %s of them approved", len(templates), waba_id, len(approved))
            return approved

        key = ("meta", waba_id, settings.api_base_url, settings.api_version)
        return self._cached(key, read, MessageTemplatesError, refresh)

    def find_meta(self, settings: MetaSettings, waba_id: str, name: str, language: str) -> MessageTemplate | None:
        """Return the approved Meta template ``name`` in ``language``, reading the list again
        once when the cached one lacks it."""
        for refresh in (False, True):
            for template in self.approved_meta(settings, waba_id, refresh=refresh).templates:
                if template.name == name and template.language == language:
                    return template
        return None

    def _cached(
        self, key: Hashable, read: Callable[[], list[Any]], errors: type[Exception], refresh: bool
    ) -> TemplateList:
        # One read at a time, so a burst of agents opening the picker makes one request.
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and not refresh and self.clock() - cached[0] < self.refresh_seconds:
                return cached[1]
            try:
                templates = read()
            except errors as error:
                if cached is None:
                    raise
                log.warning("reading WhatsApp templates failed, serving the last list: %s", error)
                return TemplateList(cached[1].templates, cached[1].fetched_at, str(error))
            result = TemplateList(templates, utcnow())
            self._cache[key] = (self.clock(), result)
            return result


def template_to_dict(template: ContentTemplate) -> dict[str, Any]:
    return {
        "content_sid": template.sid,
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "body": template.body,
        "placeholders": template_placeholders(template.body),
        "variables": template.variables,
    }


def meta_template_to_dict(template: MessageTemplate) -> dict[str, Any]:
    return {
        "template_id": template.id,
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "body": template.body,
        "placeholders": list(template.placeholders),
        "parameter_count": len(template.placeholders),
        "variables": template.examples,
    }


def template_list_to_dict(templates: TemplateList, provider: str = "twilio") -> dict[str, Any]:
    """Return a template list as the API shows it; ``provider`` is "twilio" or "meta"."""
    to_dict = meta_template_to_dict if provider == "meta" else template_to_dict
    return {
        "provider": provider,
        "items": [to_dict(t) for t in templates.templates],
        "fetched_at": isoformat(templates.fetched_at),
        "error": templates.error,
    }


def parse_template_reply(
    catalog: TemplateCatalog, settings: TwilioSettings, value: Any
) -> tuple[str, TemplateContent]:
    """Check a reply's ``template`` object and return the rendered text and the template to send.

    Raises ``InvalidInput`` for a malformed object, a template that is not approved for the
    account, and a missing, unknown or invalid variable. Raises ``ContentApiError`` when
    Twilio cannot be read.
    """
    if not isinstance(value, dict):
        raise InvalidInput("template must be an object with content_sid and variables.", field="template")
    content_sid = value.get("content_sid")
    if not isinstance(content_sid, str) or not _CONTENT_SID.match(content_sid):
        raise InvalidInput(
            "template.content_sid must be a Content SID: HX followed by 32 hexadecimal digits.",
            field="template.content_sid",
        )
    variables = _variables(value)

    template = catalog.find(settings, content_sid)
    if template is None:
        raise InvalidInput(
            f"{content_sid} is not a template that WhatsApp approved for this channel's Twilio account.",
            field="template.content_sid",
        )
    values = _checked_values(template.name, template_placeholders(template.body), variables)
    rendered = render_template(template.body, values) if template.body else f"[Template {template.name}]"
    return rendered, TemplateContent(template.sid, values)


def parse_meta_template_reply(
    catalog: TemplateCatalog, settings: MetaSettings, waba_id: str, value: Any
) -> tuple[str, TemplateContent]:
    """Check a reply's ``template`` object on a Meta channel: ``name``, ``language`` and ``variables``.

    Returns the rendered text and the template to send. Raises ``InvalidInput`` for a
    malformed object, a template that is not approved in that language for the business
    account, and a missing, unknown or invalid variable. Raises ``MessageTemplatesError``
    when the Graph API cannot be read.
    """
    if not isinstance(value, dict):
        raise InvalidInput("template must be an object with name, language and variables.", field="template")
    name, language = value.get("name"), value.get("language")
    if not isinstance(name, str) or not _META_TEMPLATE_NAME.match(name):
        raise InvalidInput(
            "template.name must be a Meta template name: lower-case letters, digits and underscores.",
            field="template.name",
        )
    if not isinstance(language, str) or not _META_LANGUAGE.match(language):
        raise InvalidInput(
            "template.language must be a language code such as en or en_US.", field="template.language"
        )
    variables = _variables(value)

    template = catalog.find_meta(settings, waba_id, name, language)
    if template is None:
        raise InvalidInput(
            f"{name} ({language}) is not a template that WhatsApp approved for this channel's "
            "business account.",
            field="template.name",
        )
    values = _checked_values(template.name, list(template.placeholders), variables)
    rendered = render_template(template.body, values) if template.body else f"[Template {template.name}]"
    return rendered, TemplateContent(None, values, name=template.name, language=template.language)


def _variables(value: dict[str, Any]) -> dict[str, str]:
    variables = value.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise InvalidInput(
            "template.variables must be an object of strings, such as {\"1\": \"Grace\"}.",
            field="template.variables",
        )
    return variables


def _checked_values(template_name: str, placeholders: list[str], variables: dict[str, str]) -> dict[str, str]:
    """Return the stripped value of each placeholder. Raises ``InvalidInput`` for an unknown,
    missing or invalid variable."""
    unknown = sorted(set(variables) - set(placeholders))
    if unknown:
        raise InvalidInput(
            f"The template {template_name} has no variable {unknown[0]!r}; "
            f"it has {', '.join(placeholders) or 'none'}.",
            field=f"template.variables.{unknown[0]}",
        )
    for name in placeholders:
        text = variables.get(name, "").strip()
        if not text:
            raise InvalidInput(f"Fill in variable {{{{{name}}}}} of the template.", field=f"template.variables.{name}")
        problem = value_problem(text)
        if problem is not None:
            raise InvalidInput(
                f"Variable {{{{{name}}}}} {problem}. WhatsApp accepts a template variable of one line "
                f"of at most {MAX_VALUE_LENGTH} characters, without tabs or other control characters "
                f"and with at most {MAX_CONSECUTIVE_SPACES} consecutive spaces.",
                field=f"template.variables.{name}",
            )
    return {name: variables[name].strip() for name in placeholders}
