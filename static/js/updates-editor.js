// The form of one update template: fields, trigger parameters, conditions, WhatsApp variables,
// the placeholder list, and the problems the server found, each shown beside its field.

import { h, replaceChildren } from './dom.js';
import { AGENT_STATUSES, PRIORITY_LABELS, STATUS_LABELS } from './workflow.js';

export const TRIGGER_LABELS = {
  status_changed: 'Status changed',
  assigned: 'Assigned to an agent',
  no_agent_reply: 'No agent reply',
  queue_wait: 'Waiting in the queue',
  first_response_at_risk: 'First response at risk',
  periodic: 'Periodic',
  resolved: 'Resolved',
};

const TRIGGER_HELP = {
  status_changed: 'Sent when the conversation moves to the chosen status.',
  assigned: 'Sent when an agent, or automatic assignment, takes the conversation.',
  no_agent_reply: 'Sent when the customer has waited this long since their last message without an agent reply.',
  queue_wait: 'Sent when the conversation has waited this long in its team queue without an agent.',
  first_response_at_risk: 'Sent when the first agent reply is not expected within this many hours.',
  periodic: 'Sent again at this interval while the conversation stays open.',
  resolved: 'Sent when the conversation is resolved.',
};

const PARAM_LABELS = {
  to_status: 'New status',
  from_status: 'Previous status',
  hours: 'After (hours)',
  every_hours: 'Every (hours)',
  business_hours: 'Count business hours only',
};

const CHANNEL_LABELS = { email: 'Email', whatsapp: 'WhatsApp' };

// Fields whose problems show beside them; anything else shows in the summary only.
const FIELD_LABELS = {
  name: 'Name',
  trigger: 'Trigger',
  trigger_params: 'Trigger settings',
  conditions: 'Conditions',
  email_subject: 'Email subject',
  email_body: 'Email body',
  whatsapp_body: 'WhatsApp body',
  whatsapp_content_sid: 'Content SID',
  whatsapp_variables: 'Template variables',
  enabled: 'Enabled',
};

const BODY_FIELDS = ['email_subject', 'email_body', 'whatsapp_body'];

// Keys that move the caret or, with Shift, select text. Tab is not one of them, because tabbing
// into a text input selects all of its text without the user choosing that selection.
const CARET_KEYS = new Set(['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End', 'PageUp', 'PageDown']);

/**
 * Scroll a field that Tab focused fully into view, clear of the sticky header and actions bar
 * (the window's scroll padding). Chrome scrolls a text area only as far as its caret.
 */
function revealField(field) {
  // The actions bar sticks to the bottom of the window, so it is in view already.
  if (field.closest('.editor__actions')) return;
  const padding = getComputedStyle(document.documentElement);
  const room = window.innerHeight - (parseFloat(padding.scrollPaddingTop) || 0) - (parseFloat(padding.scrollPaddingBottom) || 0);
  // A field taller than that room keeps the browser's scroll, which shows its caret.
  if (field.getBoundingClientRect().height <= room) field.scrollIntoView({ block: 'nearest' });
}

/** Return a short description of a template's trigger, such as "No agent reply for 4 h". */
export function describeTrigger(template) {
  const params = template.trigger_params ?? {};
  const label = TRIGGER_LABELS[template.trigger] ?? template.trigger;
  if (template.trigger === 'status_changed' && params.to_status) {
    return `Status changed to ${STATUS_LABELS[params.to_status] ?? params.to_status}`;
  }
  if (params.every_hours) return `Every ${params.every_hours} h`;
  if (params.hours) return `${label} for ${params.hours} h`;
  return label;
}

export class TemplateEditor {
  /**
   * @param {HTMLElement} root The editor section.
   * @param {object} options
   * @param {object} options.catalogue The server's placeholders, triggers and condition keys.
   * @param {object[]} options.teams Teams as { id, name }.
   * @param {object[]} options.labels Labels as { id, name }.
   */
  constructor(root, { catalogue, teams, labels }) {
    this.root = root;
    this.catalogue = catalogue;
    this.teams = teams;
    this.labels = labels;
    this.errorNodes = new Map();
    // Numbers the variable rows' element ids, which must stay unique when rows are removed.
    this.variableCount = 0;
    // The field and selection that placeholders go into, as { name, start, end }. It is taken
    // when the user edits a subject or body or places the caret in one, never on focus alone,
    // because tabbing into a text input selects all of its text.
    this.insertPoint = null;
  }

  /**
   * Build the form for `template` (null for a new one); `actions` and `preview` are nodes to
   * mount. `keepInsertPoint` keeps the placeholders' target, for the template that is open already.
   */
  render(template, { actions, preview, keepInsertPoint = false }) {
    const fields = template ?? { trigger: 'status_changed', trigger_params: { to_status: 'pending' }, conditions: {} };
    this.errorNodes.clear();
    if (!keepInsertPoint) this.insertPoint = null;
    this.variableCount = 0;
    this.summary = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1', hidden: true });

    this.name = this.textInput('name', fields.name ?? '', { maxlength: '120', required: true });
    this.trigger = h('select', { class: 'field__input', id: 'field-trigger', 'aria-describedby': 'trigger-help error-trigger', onChange: () => this.renderParams({}) },
      this.catalogue.triggers.map((trigger) => h('option', { value: trigger.name, selected: trigger.name === fields.trigger },
        TRIGGER_LABELS[trigger.name] ?? trigger.name)));
    this.triggerHelp = h('p', { class: 'field__help', id: 'trigger-help' });
    this.paramsHost = h('div', { class: 'params' });
    this.renderParams(fields.trigger_params ?? {});

    this.subject = this.textInput('email_subject', fields.email_subject ?? '', { maxlength: '998' });
    this.emailBody = this.textArea('email_body', fields.email_body ?? '', 8);
    this.whatsappBody = this.textArea('whatsapp_body', fields.whatsapp_body ?? '', 4);
    this.contentSid = this.textInput('whatsapp_content_sid', fields.whatsapp_content_sid ?? '', {
      placeholder: 'HX…', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'content-sid-help error-whatsapp_content_sid',
    });
    this.variableRows = h('div', { class: 'variables__rows' });
    for (const [number, name] of Object.entries(fields.whatsapp_variables ?? {})) this.addVariable(number, name);

    const title = template ? `Edit “${template.name}”` : 'New template';
    replaceChildren(this.root,
      h('div', { class: 'editor__header' },
        h('h2', { id: 'editor-heading' }, title),
        template ? h('span', { class: `state-pill ${template.enabled ? 'state-pill--on' : ''}` }, template.enabled ? 'Enabled' : 'Disabled') : null),
      this.summary,
      h('form', { class: 'editor', id: 'template-form', novalidate: true, onSubmit: (event) => event.preventDefault() },
        // On the keyup of Tab, which the newly focused field gets, and not on focus, because a
        // scroll under a pressed mouse button would move the field away before the click.
        h('div', { class: 'editor__fields', onKeyup: (event) => { if (event.key === 'Tab') revealField(event.target); } },
          this.field('name', 'Name', this.name),
          h('fieldset', { class: 'group' },
            h('legend', {}, 'Trigger'),
            this.field('trigger', 'When', this.trigger, this.triggerHelp),
            this.paramsHost,
            this.errorNode('trigger_params')),
          this.conditionsGroup(fields.conditions ?? {}),
          h('fieldset', { class: 'group' },
            h('legend', {}, 'Email'),
            this.field('email_subject', 'Subject', this.subject),
            this.field('email_body', 'Body', this.emailBody)),
          h('fieldset', { class: 'group' },
            h('legend', {}, 'WhatsApp'),
            this.field('whatsapp_body', 'Body, sent inside the 24-hour window', this.whatsappBody),
            this.field('whatsapp_content_sid', 'Approved template (Content SID), sent outside the window', this.contentSid,
              h('p', { class: 'field__help', id: 'content-sid-help' }, 'Leave empty to send nothing outside the window.')),
            h('div', { class: 'variables', role: 'group', 'aria-labelledby': 'variables-label' },
              h('p', { class: 'field__label', id: 'variables-label' }, 'Template variables'),
              this.variableRows,
              h('button', { type: 'button', class: 'button button--small', onClick: () => this.addVariable('', '', true) }, 'Add variable'),
              this.errorNode('whatsapp_variables'))),
          h('div', { class: 'editor__actions' }, actions)),
        h('aside', { class: 'editor__side', 'aria-labelledby': 'placeholders-heading' },
          this.placeholderList(),
          preview)));
  }

  // ---- Building blocks -------------------------------------------------------------------

  field(name, label, input, ...extra) {
    return h('div', { class: 'field' },
      h('label', { class: 'field__label', for: input.id }, label),
      input,
      extra,
      this.errorNode(name));
  }

  errorNode(name) {
    const node = h('p', { class: 'field__error', id: `error-${name}`, hidden: true });
    this.errorNodes.set(name, node);
    return node;
  }

  textInput(name, value, attributes = {}) {
    const input = h('input', {
      class: 'field__input', id: `field-${name}`, name, type: 'text', 'aria-describedby': `error-${name}`, ...attributes,
    });
    input.value = value;
    if (BODY_FIELDS.includes(name)) this.trackInsertPoint(input);
    return input;
  }

  textArea(name, value, rows) {
    const area = h('textarea', {
      class: 'field__input field__input--area', id: `field-${name}`, name, rows: String(rows), spellcheck: 'true',
      'aria-describedby': `error-${name}`,
    });
    area.value = value;
    this.trackInsertPoint(area);
    return area;
  }

  /** Remember the caret of `field` whenever the user edits the text or places the caret. */
  trackInsertPoint(field) {
    const remember = () => {
      this.insertPoint = { name: field.name, start: field.selectionStart, end: field.selectionEnd };
    };
    field.addEventListener('input', remember);
    field.addEventListener('keyup', (event) => {
      const selectsAll = (event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 'a';
      if (CARET_KEYS.has(event.key) || selectsAll) remember();
    });
    // A drag that selects text may end outside the field, so the release is caught on the document.
    field.addEventListener('mousedown', () => document.addEventListener('mouseup', remember, { once: true }));
  }

  renderParams(values) {
    for (const name of this.errorNodes.keys()) {
      if (name.startsWith('param-')) this.errorNodes.delete(name);
    }
    const trigger = this.catalogue.triggers.find((item) => item.name === this.trigger.value);
    this.triggerHelp.textContent = TRIGGER_HELP[this.trigger.value] ?? '';
    this.paramInputs = new Map();
    const rows = (trigger?.params ?? []).map((param) => {
      const id = `param-${param.name}`;
      let input;
      if (param.kind === 'bool') {
        input = h('input', { type: 'checkbox', id, checked: values[param.name] === true });
        this.paramInputs.set(param.name, { param, input });
        return h('div', { class: 'check' }, input, h('label', { for: id }, PARAM_LABELS[param.name] ?? param.name));
      }
      if (param.kind === 'status') {
        input = h('select', { class: 'field__input', id },
          param.required ? null : h('option', { value: '' }, 'Any'),
          AGENT_STATUSES.map((status) => h('option', { value: status, selected: values[param.name] === status },
            STATUS_LABELS[status] ?? status)));
      } else {
        input = h('input', {
          class: 'field__input field__input--number', id, type: 'number', inputmode: 'decimal',
          min: String(param.minimum || 0.5), step: '0.5', required: param.required,
        });
        input.value = values[param.name] ?? '';
      }
      this.paramInputs.set(param.name, { param, input });
      const label = `${PARAM_LABELS[param.name] ?? param.name}${param.required ? '' : ' (optional)'}`;
      input.setAttribute('aria-describedby', `error-${id}`);
      return h('div', { class: 'field field--inline' },
        h('label', { class: 'field__label', for: id }, label), input, this.errorNode(id));
    });
    replaceChildren(this.paramsHost, rows);
  }

  conditionsGroup(conditions) {
    this.conditionInputs = new Map();
    const options = {
      channels: Object.entries(CHANNEL_LABELS),
      priorities: Object.entries(PRIORITY_LABELS),
      statuses: AGENT_STATUSES.map((status) => [status, STATUS_LABELS[status] ?? status]),
      team_ids: this.teams.map((team) => [team.id, team.name]),
      labels: this.labels.map((label) => [label.name, label.name]),
    };
    const titles = { channels: 'Channels', priorities: 'Priorities', statuses: 'Statuses', team_ids: 'Teams', labels: 'Labels' };
    const groups = this.catalogue.conditions.map((key) => {
      const chosen = new Set((conditions[key] ?? []).map(String));
      const boxes = (options[key] ?? []).map(([value, label]) => {
        const id = `condition-${key}-${String(value).replace(/[^A-Za-z0-9_-]/g, '_')}`;
        const input = h('input', { type: 'checkbox', id, value: String(value), checked: chosen.has(String(value)) });
        return h('div', { class: 'check' }, input, h('label', { for: id }, label));
      });
      this.conditionInputs.set(key, boxes.map((box) => box.querySelector('input')));
      return h('fieldset', { class: 'choices' },
        h('legend', {}, titles[key] ?? key),
        boxes.length ? boxes : h('p', { class: 'field__help' }, `No ${(titles[key] ?? key).toLowerCase()} yet.`));
    });
    return h('fieldset', { class: 'group' },
      h('legend', {}, 'Conditions'),
      h('p', { class: 'field__help' }, 'Leave a list empty to match every conversation. Labels match when the conversation has any one of them.'),
      h('div', { class: 'choices-grid' }, groups),
      this.errorNode('conditions'));
  }

  addVariable(number, name, focus = false) {
    this.variableCount += 1;
    const index = this.variableCount;
    const numberInput = h('input', {
      class: 'field__input field__input--number', type: 'number', min: '1', max: '99', id: `variable-number-${index}`,
      'aria-label': `Variable ${index}: number in the approved template`,
    });
    numberInput.value = number || String(this.variableRows.children.length + 1);
    const select = h('select', { class: 'field__input', id: `variable-name-${index}`, 'aria-label': `Variable ${index}: placeholder` },
      this.catalogue.placeholders.map((placeholder) => h('option', { value: placeholder.name, selected: placeholder.name === name },
        placeholder.name)));
    const row = h('div', { class: 'variables__row' },
      h('span', { class: 'variables__brace', 'aria-hidden': 'true' }, '{{'), numberInput,
      h('span', { class: 'variables__brace', 'aria-hidden': 'true' }, '}} ='), select,
      h('button', {
        type: 'button', class: 'button button--ghost button--small', 'aria-label': `Remove variable ${index}`,
        onClick: () => row.remove(),
      }, 'Remove'));
    this.variableRows.append(row);
    if (focus) numberInput.focus();
  }

  placeholderList() {
    return h('section', { class: 'placeholders' },
      h('h3', { id: 'placeholders-heading' }, 'Placeholders'),
      h('p', { class: 'field__help' }, 'Insert one at the cursor of the last subject or body you edited.'),
      h('ul', { class: 'placeholders__list' },
        this.catalogue.placeholders.map((placeholder) => h('li', {},
          h('button', {
            type: 'button', class: 'placeholder-chip', title: placeholder.description,
            'aria-label': `Insert ${placeholder.name}`,
            onClick: () => this.insertPlaceholder(placeholder.name),
          }, `{{ ${placeholder.name} }}`)))));
  }

  /**
   * Insert the placeholder `name` at the remembered caret, replacing the text the user selected
   * there; without one, at the end of the email body. The field gets the focus, with the caret
   * after the placeholder.
   */
  insertPlaceholder(name) {
    const field = this.root.querySelector(`#field-${this.insertPoint?.name ?? 'email_body'}`);
    const length = field.value.length;
    const start = Math.min(this.insertPoint?.start ?? length, length);
    const end = Math.min(this.insertPoint?.end ?? length, length);
    field.focus();
    field.setRangeText(`{{ ${name} }}`, start, end, 'end');
    // setRangeText fires no input event, but the page and the insert point listen for one.
    field.dispatchEvent(new Event('input', { bubbles: true }));
  }

  // ---- Reading the form ------------------------------------------------------------------

  /** Return the form's fields in the API's shape. */
  collect() {
    const trigger_params = {};
    for (const [name, { param, input }] of this.paramInputs) {
      if (param.kind === 'bool') {
        if (input.checked) trigger_params[name] = true;
      } else if (param.kind === 'status') {
        if (input.value) trigger_params[name] = input.value;
      } else if (input.value !== '') {
        trigger_params[name] = Number(input.value);
      }
    }
    const conditions = {};
    for (const [key, inputs] of this.conditionInputs) {
      const chosen = inputs.filter((input) => input.checked).map((input) => (key === 'team_ids' ? Number(input.value) : input.value));
      if (chosen.length) conditions[key] = chosen;
    }
    const whatsapp_variables = {};
    for (const row of this.variableRows.children) {
      const [numberInput, select] = row.querySelectorAll('input, select');
      whatsapp_variables[numberInput.value.trim()] = select.value;
    }
    return {
      name: this.name.value,
      trigger: this.trigger.value,
      trigger_params,
      conditions,
      email_subject: this.subject.value,
      email_body: this.emailBody.value,
      whatsapp_body: this.whatsappBody.value,
      whatsapp_content_sid: this.contentSid.value.trim() || null,
      whatsapp_variables,
    };
  }

  // ---- Problems --------------------------------------------------------------------------

  /**
   * Return a problem for each required field left empty. Its `text` names the field by its label
   * on this page and says what to enter. The server's reasons use the API's field names instead.
   */
  findEmptyRequiredFields() {
    const problems = [];
    if (!this.name.value.trim()) {
      problems.push({ field: 'name', text: 'Name is required. Enter a name for this template.' });
    }
    for (const [name, { param, input }] of this.paramInputs) {
      if (param.required && param.kind === 'hours' && input.value === '') {
        const label = PARAM_LABELS[name] ?? name;
        problems.push({ field: `param-${name}`, text: `${label} is required. Enter a number of hours, such as 4.` });
      }
    }

    const subject = this.subject.value.trim();
    const emailBody = this.emailBody.value.trim();
    if (emailBody && !subject) {
      problems.push({
        field: 'email_subject',
        text: 'Subject is required for an email. Enter a subject, or empty the email’s Body to send no email.',
      });
    } else if (subject && !emailBody) {
      problems.push({
        field: 'email_body',
        text: 'Body is required for an email. Enter the email’s text, or empty the Subject to send no email.',
      });
    } else if (!emailBody && !this.whatsappBody.value.trim() && !this.contentSid.value.trim()) {
      problems.push({
        field: 'email_body',
        text: 'There is nothing to send. Enter an email Body, a WhatsApp Body or an Approved template (Content SID).',
      });
    }
    return problems.map((problem) => ({ line: null, reason: problem.text, ...problem }));
  }

  /** Return the input that a problem's field names: a form field or a trigger parameter. */
  inputFor(field) {
    if (field.startsWith('param-')) return this.paramInputs.get(field.slice('param-'.length))?.input ?? null;
    return this.root.querySelector(`#field-${field}`);
  }

  clearProblems() {
    this.summary.hidden = true;
    this.summary.replaceChildren();
    for (const [name, node] of this.errorNodes) {
      node.hidden = true;
      node.replaceChildren();
      this.inputFor(name)?.removeAttribute('aria-invalid');
    }
  }

  /**
   * Show each { field, line, reason } beside its field and in a summary that links to it. A
   * problem with a `text` that names its field shows that text in both places instead.
   */
  showProblems(problems, heading = 'The template was not saved') {
    this.clearProblems();
    const items = problems.map((problem) => {
      const where = problem.line ? `line ${problem.line}: ` : '';
      const node = this.errorNodes.get(problem.field);
      if (node) {
        node.hidden = false;
        node.append(h('span', { class: 'field__error-line' }, problem.text ?? `${where ? `Line ${problem.line}: ` : ''}${problem.reason}`));
        this.inputFor(problem.field)?.setAttribute('aria-invalid', 'true');
      }
      const label = FIELD_LABELS[problem.field] ?? problem.field;
      return h('li', {}, h('a', {
        href: `#${node ? node.id : 'template-form'}`,
        onClick: (event) => {
          event.preventDefault();
          this.focusProblem(problem);
        },
      }, problem.text ?? `${label}, ${where}${problem.reason}`));
    });
    replaceChildren(this.summary, h('p', { class: 'error-summary__title' }, heading), h('ul', {}, items));
    this.summary.hidden = false;
    this.summary.focus();
  }

  /** Focus the field of a problem, with the problem's line selected in a multi-line body. */
  focusProblem(problem) {
    const input = this.inputFor(problem.field)
      ?? this.errorNodes.get(problem.field)?.closest('fieldset')?.querySelector('input, select, textarea');
    if (!input) return;
    input.focus();
    if (problem.line && typeof input.setSelectionRange === 'function' && input.tagName === 'TEXTAREA') {
      const lines = input.value.split('\n');
      const start = lines.slice(0, problem.line - 1).reduce((total, line) => total + line.length + 1, 0);
      input.setSelectionRange(start, start + (lines[problem.line - 1] ?? '').length);
    }
  }
}
