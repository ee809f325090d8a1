// The Spaces API, through the same origin (/api/* goes to API Gateway in AWS and to the
// local API when running on one machine). Every error arrives as {error, message}.
// Each call carries a fresh access token (auth.js renews it ahead of expiry); a 401 is
// answered by renewing the token once and trying the call again.

import { SessionEnded } from "./auth.js";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `The service answered ${status}`);
    this.status = status;
    this.code = body?.error || "unknown";
    this.body = body || {};
  }
}

export class Api {
  constructor(base, tokens) {
    this.base = base.replace(/\/$/, "");
    this.tokens = tokens;
  }

  // `refused`: the token a 401 answered. It is renewed only if it is still the current
  // one: calls refused together renew once, and the later ones use that renewal.
  async token(refused) {
    try {
      if (refused && refused === this.tokens.session.accessToken) await this.tokens.refresh();
      return refused ? this.tokens.session.accessToken : await this.tokens.fresh();
    } catch (error) {
      if (error instanceof SessionEnded) {
        throw new ApiError(401, { error: "session_ended", message: "Your session has ended. Sign in again." });
      }
      throw new ApiError(0, { error: "network", message: error.message });
    }
  }

  async call(method, path, body, refused = null) {
    const token = await this.token(refused);
    const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
    let response;
    try {
      response = await fetch(this.base + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, { error: "network", message: "Parlor cannot be reached; check your connection" });
    }
    if (response.status === 401 && !refused) return this.call(method, path, body, token);
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  get(path) { return this.call("GET", path); }
  post(path, body) { return this.call("POST", path, body); }
  put(path, body) { return this.call("PUT", path, body); }
  delete(path) { return this.call("DELETE", path); }
}
