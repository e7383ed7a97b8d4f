// The HTTP half of the client contract (docs/protocol.md sections 1, 6, 8):
// one function per call, and every refusal turned into a sentence a
// person can read. Nothing here touches the page.

/** A refusal or a failure, with a message fit to show as it is. */
export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const UNREACHABLE = "Can't reach the server. Check your connection and try again.";

/** Readable text for a refusal (`what` names the action, e.g. "sign in"). */
function readable(status, code, serverMessage, retryAfter, what) {
  switch (code) {
    case 'unauthorized':
      return what === 'sign in' ? 'Wrong user name or password.' : 'Your session has ended. Sign in again.';
    case 'rate_limited':
      return `Too many attempts. Try again in ${retryAfter || 'a few'} seconds.`;
    case 'unavailable':
      return `The server is busy. Try again${retryAfter ? ` in ${retryAfter} seconds` : ' shortly'}.`;
    case 'name_taken':
      return 'That user name is taken. Choose another.';
    case 'invalid_name':
      return 'User names are 3–32 characters: lower-case letters, digits and _.';
    case 'invalid_password':
      return 'Passwords are 8 to 256 characters long.';
    case 'too_large':
      return 'That file is too large for this server.';
    case 'unsupported_media_type':
      return 'This server does not accept that kind of file.';
    case 'quota_exceeded':
      return 'Too many unsent uploads. Send or wait, then try again.';
    case 'no_chat':
      return 'Send a message first: a timer belongs to a chat that exists.';
    case 'not_found':
      return serverMessage || 'Not found.';
    default:
      if (status >= 500) return 'The server had a problem. Try again later.';
      return serverMessage || `The server refused to ${what} (${status}).`;
  }
}

/** The HTTP API of one server, for one signed-in user (or none yet). */
export class Api {
  constructor(token = null) {
    this.token = token;
  }

  async call(method, path, { body, what = 'do that', raw = false, contentType } = {}) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let payload;
    if (body instanceof Blob) {
      payload = body;
      headers['Content-Type'] = contentType || body.type || 'application/octet-stream';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload });
    } catch {
      throw new ApiError('unreachable', UNREACHABLE);
    }
    if (!response.ok) throw await refusal(response, what);
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  register(name, password) {
    return this.call('POST', '/v1/users', { body: { name, password }, what: 'register' });
  }
  login(name, password) {
    return this.call('POST', '/v1/tokens', { body: { name, password }, what: 'sign in' });
  }
  logout() {
    return this.call('DELETE', '/v1/tokens/current', { what: 'sign out' });
  }
  clientConfig() {
    return this.call('GET', '/v1/client-config', { what: 'load settings' });
  }
  chats() {
    return this.call('GET', '/v1/chats?limit=100', { what: 'load chats' });
  }
  history(peer, before) {
    return this.page(`/v1/chats/${encodeURIComponent(peer)}/messages`, before);
  }
  groupHistory(id, before) {
    return this.page(`/v1/groups/${encodeURIComponent(id)}/messages`, before);
  }
  /** One page of a conversation (30 messages), older than `before` if given. */
  page(path, before) {
    const q = new URLSearchParams({ limit: '30' });
    if (before != null) q.set('before', before);
    return this.call('GET', `${path}?${q}`, { what: 'load messages' });
  }
  createGroup(name, members) {
    return this.call('POST', '/v1/groups', { body: { name, members }, what: 'create the group' });
  }
  groups() {
    return this.call('GET', '/v1/groups', { what: 'load groups' });
  }
  setGroupTimer(id, seconds) {
    return this.call('PUT', `/v1/groups/${encodeURIComponent(id)}/timer`, { body: { seconds }, what: 'set the timer' });
  }
  presence(name) {
    return this.call('GET', `/v1/users/${encodeURIComponent(name)}/presence`, { what: 'find that user' });
  }
  search(words) {
    return this.call('GET', `/v1/search?${new URLSearchParams({ q: words, limit: '50' })}`, { what: 'search' });
  }
  stars() {
    return this.call('GET', '/v1/stars?limit=100', { what: 'load starred messages' });
  }
  star(id, starred) {
    return this.call(starred ? 'PUT' : 'DELETE', `/v1/messages/${id}/star`, { what: 'star that message' });
  }
  setTimer(peer, seconds) {
    return this.call('PUT', `/v1/chats/${encodeURIComponent(peer)}/timer`, { body: { seconds }, what: 'set the timer' });
  }
  privacy() {
    return this.call('GET', '/v1/me/privacy', { what: 'load privacy settings' });
  }
  setPrivacy(settings) {
    return this.call('PUT', '/v1/me/privacy', { body: settings, what: 'change privacy settings' });
  }
  mediaConfig() {
    return this.call('GET', '/v1/media/config', { what: 'load media limits' });
  }
  async mediaBlob(id, thumbnail = false) {
    const response = await this.call('GET', `/v1/media/${id}${thumbnail ? '/thumbnail' : ''}`, { raw: true, what: 'load the picture' });
    return response.blob();
  }

  /** Uploads `file`, calling `progress(fraction)` as bytes leave; resolves to the upload. */
  upload(file, progress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/v1/media');
      xhr.setRequestHeader('Authorization', `Bearer ${this.token}`);
      xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
      xhr.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError('unreachable', UNREACHABLE));
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: handled below */ }
        if (xhr.status === 201 && body) return resolve(body);
        const error = body?.error || {};
        reject(new ApiError(error.code || 'internal',
          readable(xhr.status, error.code, error.message, xhr.getResponseHeader('Retry-After'), 'upload')));
      };
      xhr.send(file);
    });
  }
}

async function refusal(response, what) {
  let error = {};
  try { error = (await response.json()).error || {}; } catch { /* a proxy's HTML page */ }
  const retryAfter = response.headers.get('Retry-After');
  return new ApiError(error.code || 'internal',
    readable(response.status, error.code, error.message, retryAfter, what), response.status);
}

/** "1.5 MB" */
export function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Why `file` cannot be uploaded under `limits` (`GET /v1/media/config`), or null. */
export function uploadRefusal(file, limits) {
  if (!limits) return null;
  if (file.size > limits.max_size) {
    return `“${file.name}” is too large (${sizeText(file.size)}); the limit is ${sizeText(limits.max_size)}.`;
  }
  if (!limits.allowed_types.includes(file.type || 'application/octet-stream')) {
    return `“${file.name}” is a kind of file this server does not accept (${file.type || 'unknown type'}).`;
  }
  return null;
}
