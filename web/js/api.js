// The Spaces API, through the same origin (/api/* goes to API Gateway in AWS and to the
// local API when running on one machine). Every error arrives as {error, message}.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `The service answered ${status}`);
    this.status = status;
    this.code = body?.error || "unknown";
    this.body = body || {};
  }
}

export class Api {
  constructor(base, token) {
    this.base = base.replace(/\/$/, "");
    this.token = token;
  }

  async call(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json" };
    let response;
    try {
      response = await fetch(this.base + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, { error: "network", message: "Parlor cannot be reached; check your connection" });
    }
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  get(path) { return this.call("GET", path); }
  post(path, body) { return this.call("POST", path, body); }
  put(path, body) { return this.call("PUT", path, body); }
  delete(path) { return this.call("DELETE", path); }
}
