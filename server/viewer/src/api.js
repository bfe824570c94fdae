// The API client of the page: every request carries the tab's token, if any.
const TOKEN_KEY = "terracat.token";
const SESSION_KEY = "terracat.session";

// The API root: the page is served at <root>/viewer/.
export const apiRoot = new URL("../", window.location.href).href;

export const auth = {
  get token() {
    return window.sessionStorage.getItem(TOKEN_KEY) || "";
  },
  set token(value) {
    if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
    else window.sessionStorage.removeItem(TOKEN_KEY);
  },
  // The id of a token this tab got by signing in with a password: revoked at sign-out.
  get session() {
    return window.sessionStorage.getItem(SESSION_KEY) || "";
  },
  set session(value) {
    if (value) window.sessionStorage.setItem(SESSION_KEY, value);
    else window.sessionStorage.removeItem(SESSION_KEY);
  },
  headers() {
    const token = this.token;
    return token ? { Authorization: `Bearer ${token}` } : {};
  },
};

export class ApiError extends Error {
  constructor(status, code, description) {
    super(`${description || "request failed"} (${status}${code ? ` ${code}` : ""})`);
    this.status = status;
    this.code = code;
  }
}

// An absolute URL of the API from a path relative to its root, or an absolute URL as is.
export function apiUrl(path, params) {
  const url = new URL(path, apiRoot);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url.href;
}

// Whether a URL is one of this API's (the token is sent to it and to nothing else).
export function isApiUrl(url) {
  return typeof url === "string" && url.startsWith(apiRoot);
}

export async function request(path, { method = "GET", body, params, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...auth.headers(), ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(apiUrl(path, params), init);
  if (!response.ok) {
    let code = "";
    let description = response.statusText;
    try {
      const problem = await response.json();
      code = problem.code || "";
      description = problem.description || description;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, code, description);
  }
  return response.status === 204 ? null : response.json();
}

export const getJson = (path, params) => request(path, { params });
export const postJson = (path, body) => request(path, { method: "POST", body });

// Download an API file that needs the token (an export archive) as a file of the browser.
export async function download(url, filename) {
  const response = await fetch(url, { headers: auth.headers() });
  if (!response.ok) throw new ApiError(response.status, "", "download failed");
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
