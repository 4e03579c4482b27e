// JSON client for the proactive update templates under /api/v1/update-templates.

import { ApiClient, ApiError } from './api.js';

/** A template the server rejected (422), with every problem as { field, line, reason }. */
export class TemplateProblemsError extends ApiError {
  constructor(message, problems) {
    super(422, 'invalid_template', message, problems[0]?.field ?? null);
    this.name = 'TemplateProblemsError';
    this.problems = problems;
  }
}

export class UpdatesApi extends ApiClient {
  listUpdateTemplates() {
    return this.request('GET', '/update-templates');
  }

  /** Return the placeholders, the triggers with their parameters, and the condition keys. */
  getCatalogue() {
    return this.request('GET', '/update-templates/catalogue');
  }

  createUpdateTemplate(fields) {
    return this.requestChecked('POST', '/update-templates', fields);
  }

  changeUpdateTemplate(id, fields) {
    return this.requestChecked('PATCH', `/update-templates/${encodeURIComponent(id)}`, fields);
  }

  setUpdateTemplateEnabled(id, enabled) {
    const action = enabled ? 'enable' : 'disable';
    return this.requestChecked('POST', `/update-templates/${encodeURIComponent(id)}/${action}`);
  }

  deleteUpdateTemplate(id) {
    return this.request('DELETE', `/update-templates/${encodeURIComponent(id)}`);
  }

  /** Render unsaved fields for a conversation (its id or "#id"), or with sample values for null. */
  previewUpdate(fields, conversation) {
    return this.requestChecked('POST', '/update-templates/preview', { template: fields, conversation });
  }

  /**
   * Send a request whose 422 response lists template problems, and throw TemplateProblemsError
   * with that list. ApiClient.request keeps only the first problem's field, so this method reads
   * the response itself and treats 401 and other errors the way ApiClient.request does.
   */
  async requestChecked(method, path, body = undefined) {
    const headers = { Accept: 'application/json', 'X-CSRF-Token': this.csrfToken };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(`${this.root}${path}`, {
        method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, 'network_error', 'Could not reach the server. Check the connection and try again.');
    }
    if (response.status === 422) {
      const data = await response.json().catch(() => null);
      const error = data?.error ?? {};
      throw new TemplateProblemsError(error.message ?? 'The template is invalid.', error.problems ?? []);
    }
    if (response.status === 401) {
      this.redirectToLogin();
      throw new ApiError(401, 'unauthorized', 'The session has expired. Redirecting to the sign-in page…');
    }
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new ApiError(response.status, data?.error?.code ?? `http_${response.status}`,
        data?.error?.message ?? `The server returned ${response.status}.`, data?.error?.field ?? null);
    }
    return response.status === 204 ? null : response.json();
  }
}
