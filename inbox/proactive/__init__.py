"""Proactive status updates: templates that managers configure and a scheduler sends.

- ``templates``: the placeholder catalogue, validation, sandboxed rendering, the conditions
  that decide which conversations a template applies to, and saving templates.
- ``estimates``: queue position and the expected first-response and resolution times.
- ``context``: the placeholder values for one conversation, and sample values for previews.
"""
