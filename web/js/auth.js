// Signing in. Locally, the local issuer mints a token for any user id (it stands in for
// Cognito). In AWS, Cognito's hosted sign-in page with the authorization code flow and
// PKCE; the access token is what the API verifies.

const KEY = "parlor.session";

export function saved() {
  try {
    const session = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (session && session.expiresAt > Date.now() / 1000 + 30) return session;
  } catch (_) { /* a corrupt entry is no session */ }
  return null;
}

export function forget() { sessionStorage.removeItem(KEY); }

function remember(session) { sessionStorage.setItem(KEY, JSON.stringify(session)); return session; }

export async function signInLocally(userId) {
  const response = await fetch("/local/token", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || "Sign-in failed");
  return remember({ token: body.token, userId: body.user_id, expiresAt: body.expires_at });
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export async function startCognitoSignIn(cognito) {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem("parlor.pkce", verifier);
  const params = new URLSearchParams({
    response_type: "code", client_id: cognito.client_id, redirect_uri: location.origin + "/",
    scope: "openid", code_challenge_method: "S256", code_challenge: challenge,
  });
  location.assign(`${cognito.domain}/oauth2/authorize?${params}`);
}

export async function finishCognitoSignIn(cognito) {
  const code = new URLSearchParams(location.search).get("code");
  const verifier = sessionStorage.getItem("parlor.pkce");
  if (!code || !verifier) return null;
  const response = await fetch(`${cognito.domain}/oauth2/token`, {
    method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", client_id: cognito.client_id, code,
      redirect_uri: location.origin + "/", code_verifier: verifier,
    }),
  });
  sessionStorage.removeItem("parlor.pkce");
  history.replaceState(null, "", "/");
  if (!response.ok) throw new Error("Sign-in with Cognito failed");
  const tokens = await response.json();
  const claims = JSON.parse(atob(tokens.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  return remember({ token: tokens.access_token, userId: claims.sub, expiresAt: claims.exp });
}
