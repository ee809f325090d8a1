// Signing in, and staying signed in. One code path in AWS and on one machine: the
// authorization code flow with PKCE against Cognito's hosted sign-in and token endpoint,
// or against the local authorization server (local/oauth.py), which speaks the same
// OAuth. The access token is what the API verifies and lives about an hour; the refresh
// token renews it before it expires, and at once when the API answers 401.
//
// The session is kept in localStorage, so that a new tab (or a notification that opens
// the app) is signed in too; tabs share it, and the `storage` event tells each tab of
// another's refresh or sign-out.

const KEY = "parlor.session";
const PENDING = "parlor.sign-in";
// A failed refresh for want of a network is tried again this much later.
const RETRY_MS = 5000;

export class SessionEnded extends Error {}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function claimsOf(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

export function providerOf(config) { return config.auth.cognito || config.auth.oauth; }

function redirectUri() { return `${location.origin}/`; }

function load() {
  try {
    const session = JSON.parse(localStorage.getItem(KEY) || "null");
    if (session && session.accessToken && session.userId) return session;
  } catch (_) { /* a corrupt entry is no session */ }
  return null;
}

function save(session) { localStorage.setItem(KEY, JSON.stringify(session)); }

export function saved() { return load(); }

export async function startSignIn(provider, { loginHint, returnTo } = {}) {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state: nonce, returnTo: returnTo || "/" }));
  const params = new URLSearchParams({
    response_type: "code", client_id: provider.client_id, redirect_uri: redirectUri(),
    scope: "openid", code_challenge_method: "S256", code_challenge: challenge, state: nonce,
  });
  if (loginHint) params.set("login_hint", loginHint);
  location.assign(`${provider.domain}/oauth2/authorize?${params}`);
}

async function tokenRequest(provider, fields) {
  let response;
  try {
    response = await fetch(`${provider.domain}/oauth2/token`, {
      method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: provider.client_id, ...fields }),
    });
  } catch (_) {
    throw new Error("The sign-in service cannot be reached; check your connection");
  }
  const body = await response.json().catch(() => ({}));
  // 400 (invalid_grant: revoked, expired) and 401 (the client) are final; others pass.
  if (response.status === 400 || response.status === 401) {
    throw new SessionEnded(body.error_description || "The sign-in service refused the session");
  }
  if (!response.ok) throw new Error(`The sign-in service answered ${response.status}`);
  return body;
}

function sessionFrom(tokens, previous) {
  const claims = claimsOf(tokens.access_token);
  return {
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token || previous?.refreshToken || null,
    userId: claims.sub,
    issuedAt: claims.iat || Math.floor(Date.now() / 1000),
    expiresAt: claims.exp,
  };
}

// Completes a sign-in the browser came back from (`?code=...&state=...`); null when
// the address carries none.
export async function finishSignIn(provider) {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  if (!code) return null;
  let pending = null;
  try { pending = JSON.parse(sessionStorage.getItem(PENDING) || "null"); } catch (_) { /* none */ }
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", pending?.returnTo || "/");
  if (!pending || params.get("state") !== pending.state) {
    throw new Error("That sign-in did not start here: sign in again");
  }
  const tokens = await tokenRequest(provider, {
    grant_type: "authorization_code", code, redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
  const session = sessionFrom(tokens);
  save(session);
  return session;
}

// The signed-in session: hands out an access token that is fresh, renews it ahead of
// its expiry, and says so ("refreshed"); "ended" when the refresh token is refused.
export class Tokens extends EventTarget {
  constructor(provider, session) {
    super();
    this.provider = provider;
    this.session = session;
    this.pending = null;
    this.timer = null;
    this.stopped = false;
    this.onStorage = (event) => { if (event.key === KEY) this.storageChanged(); };
    window.addEventListener("storage", this.onStorage);
    this.schedule();
  }

  get userId() { return this.session.userId; }

  // Renew this long before expiry: a fifth of the lifetime, at most five minutes.
  margin(session = this.session) {
    const lifetime = Math.max(1, session.expiresAt - session.issuedAt);
    return Math.min(300, Math.max(2, lifetime / 5));
  }

  due(session = this.session) { return Date.now() / 1000 >= session.expiresAt - this.margin(session); }

  async fresh() {
    if (this.due()) await this.refresh();
    return this.session.accessToken;
  }

  refresh() {
    if (!this.pending) this.pending = this.renew().finally(() => { this.pending = null; });
    return this.pending;
  }

  async renew() {
    if (this.stopped) throw new SessionEnded("Signed out");
    // Another tab may have renewed the session already.
    const stored = load();
    if (stored && stored.userId === this.session.userId && stored.expiresAt > this.session.expiresAt
        && !this.due(stored)) {
      this.adopt(stored);
      return;
    }
    if (!this.session.refreshToken) {
      this.end("Your session has ended. Sign in again.");
      throw new SessionEnded("No refresh token");
    }
    let tokens;
    try {
      tokens = await tokenRequest(this.provider,
        { grant_type: "refresh_token", refresh_token: this.session.refreshToken });
    } catch (error) {
      if (error instanceof SessionEnded) this.end("Your session has ended. Sign in again.");
      else this.schedule(RETRY_MS);
      throw error;
    }
    this.adopt(sessionFrom(tokens, this.session));
  }

  adopt(session) {
    this.session = session;
    save(session);
    this.schedule();
    this.dispatchEvent(new CustomEvent("refreshed"));
  }

  storageChanged() {
    if (this.stopped) return;
    const stored = load();
    if (!stored || stored.userId !== this.session.userId) {
      this.end("You signed out in another tab.");
    } else if (stored.accessToken !== this.session.accessToken && stored.expiresAt >= this.session.expiresAt) {
      this.session = stored;
      this.schedule();
      this.dispatchEvent(new CustomEvent("refreshed"));
    }
  }

  schedule(afterMs) {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const dueMs = (this.session.expiresAt - this.margin()) * 1000 - Date.now();
    this.timer = setTimeout(() => { this.refresh().catch(() => {}); },
      Math.max(0, afterMs ?? dueMs));
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("storage", this.onStorage);
  }

  end(message) {
    if (this.stopped) return;
    this.stop();
    localStorage.removeItem(KEY);
    this.dispatchEvent(new CustomEvent("ended", { detail: message }));
  }

  // Revokes the refresh token (best effort) and forgets the session; the caller then
  // sends the browser to the provider's logout, which ends its own sign-in too.
  async signOut() {
    this.stop();
    localStorage.removeItem(KEY);
    if (this.session.refreshToken) {
      await fetch(`${this.provider.domain}/oauth2/revoke`, {
        method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ client_id: this.provider.client_id, token: this.session.refreshToken }),
      }).catch(() => {});
    }
  }

  logoutUrl() {
    const params = new URLSearchParams({ client_id: this.provider.client_id, logout_uri: redirectUri() });
    return `${this.provider.domain}/logout?${params}`;
  }
}
