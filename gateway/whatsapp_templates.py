"""Approved WhatsApp templates: the cached list from Twilio's Content API, and template replies.

Agents pick from the templates that WhatsApp approved for the channel's Twilio account. The
list is read through the SDK (``channels.whatsapp.list_content_templates``) and kept per
account for ``SWITCHBOARD_WHATSAPP_TEMPLATE_REFRESH`` seconds. When Twilio cannot be reached,
the last list is served with the error, so a short outage does not take the picker away.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.whatsapp.twilio import (
    ContentApiError,
    ContentTemplate,
    TwilioSettings,
    list_content_templates,
    render_template,
    template_placeholders,
)
from inbox.errors import InvalidInput
from inbox.models import utcnow
from inbox.replies import TemplateContent
from inbox.serialize import isoformat

log = logging.getLogger(__name__)

APPROVED = "approved"
_CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
# WhatsApp rejects template parameters that contain line breaks or tabs.
_FORBIDDEN_IN_VARIABLE = re.compile(r"[\n\r\t]")
MAX_VARIABLE_LENGTH = 1024


@dataclass(frozen=True)
class TemplateList:
    """The approved templates of one account, when they were read, and the last read's error."""

    templates: list[ContentTemplate]
    fetched_at: datetime
    error: str | None = None


class TemplateCatalog:
    """Approved templates per Twilio account, read again once ``refresh_seconds`` have passed."""

    def __init__(
        self,
        refresh_seconds: float,
        fetch: Callable[[TwilioSettings], list[ContentTemplate]] = list_content_templates,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.refresh_seconds = refresh_seconds
        self.fetch = fetch
        self.clock = clock
        self._lock = threading.Lock()
        # (account SID, API base URL) -> (monotonic time of the read, the list)
        self._cache: dict[tuple[str, str | None], tuple[float, TemplateList]] = {}

    def approved(self, settings: TwilioSettings, *, refresh: bool = False) -> TemplateList:
        """Return the account's approved templates, from the cache while it is fresh.

        Raises ``ContentApiError`` when Twilio cannot be read and nothing is cached.
        """
        key = (settings.account_sid, settings.api_base_url)
        # One read at a time, so a burst of agents opening the picker makes one request.
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and not refresh and self.clock() - cached[0] < self.refresh_seconds:
                return cached[1]
            try:
                templates = self.fetch(settings)
            except ContentApiError as error:
                if cached is None:
                    raise
                log.warning("reading WhatsApp templates failed, serving the last list: %s", error)
                return TemplateList(cached[1].templates, cached[1].fetched_at, str(error))
            approved = [t for t in templates if t.whatsapp_status == APPROVED]
            result = TemplateList(approved, utcnow())
            self._cache[key] = (self.clock(), result)
            log.info("read %s WhatsApp templates, %s of them approved", len(templates), len(approved))
            return result

    def find(self, settings: TwilioSettings, content_sid: str) -> ContentTemplate | None:
        """Return the approved template ``content_sid``, reading the list again once when the
        cached one lacks it (a template approved a moment ago)."""
        for refresh in (False, True):
            for template in self.approved(settings, refresh=refresh).templates:
                if template.sid == content_sid:
                    return template
        return None


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


def template_list_to_dict(templates: TemplateList) -> dict[str, Any]:
    return {
        "items": [template_to_dict(t) for t in templates.templates],
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
    variables = value.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise InvalidInput(
            "template.variables must be an object of strings, such as {\"1\": \"Grace\"}.",
            field="template.variables",
        )

    template = catalog.find(settings, content_sid)
    if template is None:
        raise InvalidInput(
            f"{content_sid} is not a template that WhatsApp approved for this channel's Twilio account.",
            field="template.content_sid",
        )
    placeholders = template_placeholders(template.body)
    unknown = sorted(set(variables) - set(placeholders))
    if unknown:
        raise InvalidInput(
            f"The template {template.name} has no variable {unknown[0]!r}; "
            f"it has {', '.join(placeholders) or 'none'}.",
            field=f"template.variables.{unknown[0]}",
        )
    for name in placeholders:
        text = variables.get(name, "").strip()
        if not text:
            raise InvalidInput(f"Fill in variable {{{{{name}}}}} of the template.", field=f"template.variables.{name}")
        if len(text) > MAX_VARIABLE_LENGTH or _FORBIDDEN_IN_VARIABLE.search(text):
            raise InvalidInput(
                f"Variable {{{{{name}}}}} must be one line of at most {MAX_VARIABLE_LENGTH} characters.",
                field=f"template.variables.{name}",
            )
    values = {name: variables[name].strip() for name in placeholders}
    rendered = render_template(template.body, values) if template.body else f"[Template {template.name}]"
    return rendered, TemplateContent(template.sid, values)
