// Parlor's browser client, which for its users is Parlor: plain ES modules, no build.
// This module starts it: the configuration, signing in, the header (search, settings,
// your profile), the bar, and the pages by path (/, /spaces/{id}, /@handle, /settings),
// each a module of its own.

import { Api, ApiError } from "./api.js";
import * as auth from "./auth.js";
import { connectBar, stopBar } from "./bar.js";
import { showHome } from "./home.js";
import { showProfile } from "./profile.js";
import { registerWorker } from "./push.js";
import { showSettings } from "./settings.js";
import { leaveRoom, showSpace } from "./space.js";
import {
  $, attempt, avatar, el, go, handleOf, notify, render, state,
} from "./ui.js";

export { retryDelay } from "./room.js";

// Signing in

async function showSignIn() {
  const view = render("sign-in-template");
  const local = state.config.auth.mode === "local";
  const provider = auth.providerOf(state.config);
  // Back here after signing in.
  const returnTo = location.pathname + location.search;
  const signIn = (loginHint) => attempt(() => auth.startSignIn(provider, { loginHint, returnTo }));
  $("[data-local-hint]", view).hidden = !local;
  if (!local) {
    $("[data-sign-in-form]", view).hidden = true;
    const button = el("button", { type: "button", textContent: "Sign in with your account" });
    button.addEventListener("click", () => signIn());
    $("[data-demo-users]", view).append(el("li", {}, button));
    return;
  }
  // No passwords locally: the local sign-in takes the user id as a login hint.
  for (const user of state.config.demo_users || []) {
    const button = el("button", { type: "button", className: "secondary",
      textContent: `Sign in as @${user.handle}` });
    button.addEventListener("click", () => signIn(user.user_id));
    $("[data-demo-users]", view).append(el("li", {}, button, el("span", { className: "hint", textContent: user.note })));
  }
  $("[data-sign-in-form]", view).addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(String(new FormData(event.target).get("user")));
  });
}

// Everything of the signed-in person goes: the room, the bar's socket, the views.
function forgetSession() {
  leaveRoom();
  state.tokens?.stop();
  state.tokens = state.api = state.me = null;
  stopBar();
  $("#account").hidden = true;
}

async function signOut() {
  const tokens = state.tokens;
  forgetSession();
  if (!tokens) return;
  await tokens.signOut();
  location.assign(tokens.logoutUrl());
}

// The refresh token was refused (revoked, expired, or signed out elsewhere).
function sessionEnded(message) {
  forgetSession();
  showSignIn();
  notify(message, "info");
}

// Search people, as you type

const SEARCH_DELAY_MS = 150;

function wireSearch() {
  const input = $("#people-search");
  const results = $("#people-results");
  const status = $("#people-search-status");
  let timer = null;
  let asked = 0;
  const close = () => { results.hidden = true; results.replaceChildren(); };
  const search = async () => {
    const text = input.value.trim();
    if (!text || !state.api) { close(); status.textContent = ""; return; }
    const mine = ++asked;
    let found;
    try {
      found = await state.api.get(`/users?q=${encodeURIComponent(text)}&limit=8`);
    } catch (_) {
      found = { items: [] };
    }
    if (mine !== asked) return; // a later keystroke's answer wins
    results.replaceChildren(...found.items.map((person) => el("li", {},
      el("a", { href: `/@${person.handle}` }, avatar(person, "s"),
        el("span", { className: "result-name", textContent: person.display_name }),
        el("span", { className: "hint", textContent: ` ${handleOf(person)}` })))));
    results.hidden = found.items.length === 0;
    status.textContent = found.items.length === 1 ? "1 person found" : `${found.items.length} people found`;
  };
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, SEARCH_DELAY_MS); });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { input.value = ""; close(); }
    if (event.key === "ArrowDown") { results.querySelector("a")?.focus(); event.preventDefault(); }
  });
  results.addEventListener("click", (event) => {
    if (event.target.closest("a")) { input.value = ""; close(); }
  });
}

// Pages by path

async function route() {
  if (!state.api || !state.me) return;
  const path = location.pathname;
  const space = path.match(/^\/spaces\/(sp_[a-z0-9]{20})\/?$/);
  const person = path.match(/^\/@([A-Za-z0-9_]{1,15})\/?$/);
  if (!space) leaveRoom();
  document.title = "Parlor";
  let shown;
  if (path === "/") shown = showHome();
  else if (space) shown = showSpace(space[1]);
  else if (person) shown = showProfile(person[1]);
  else if (path === "/settings") shown = showSettings();
  else shown = Promise.resolve(render("not-found-template"));
  // Every page renders before its first await: focus moves to it then, for screen
  // readers, and not after its data arrives, when the person may be typing.
  $("#view").focus({ preventScroll: true });
  await shown;
}

// Links inside the client change the page without reloading it (the audio goes on).
function interceptLinks() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[href]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
        || event.shiftKey || event.altKey || link.target || link.origin !== location.origin) return;
    if (link.pathname.startsWith("/avatars/") || link.pathname.startsWith("/local/")) return;
    if (link.hash && link.pathname === location.pathname) return; // within the page
    event.preventDefault();
    if (link.pathname + link.search !== location.pathname + location.search) go(link.pathname + link.search);
  });
}

async function showCreateProfile() {
  $("#whoami").textContent = state.tokens.userId;
  const view = render("create-profile-template");
  $("[data-profile-form]", view).addEventListener("submit", (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(event.target));
    attempt(async () => { await state.api.put("/me", data); await start(state.tokens.session); });
  });
}

async function start(session) {
  state.tokens?.stop();
  const tokens = new auth.Tokens(auth.providerOf(state.config), session);
  state.tokens = tokens;
  // A renewed token opens a new socket: API Gateway checked the old one's at connect.
  tokens.addEventListener("refreshed", () => { if (state.tokens === tokens && state.me) connectBar(); });
  tokens.addEventListener("ended", (event) => { if (state.tokens === tokens) sessionEnded(event.detail); });
  window.parlorAuth = tokens; // for the browser tests
  state.api = new Api(state.config.api_url, tokens);
  state.me = await state.api.get("/me").catch((error) => {
    if (error instanceof ApiError && error.code === "profile_not_found") return null;
    throw error;
  });
  $("#account").hidden = false;
  if (!state.me) {
    await showCreateProfile();
    return;
  }
  const whoami = $("#whoami");
  whoami.textContent = handleOf(state.me);
  whoami.href = `/@${state.me.handle}`;
  connectBar();
  await route();
}

async function boot() {
  state.config = await (await fetch("/config.json")).json();
  // Links of the client before it had paths (/#/spaces/...) still work.
  if (location.hash.startsWith("#/")) history.replaceState(null, "", location.hash.slice(1));
  $("#sign-out").addEventListener("click", signOut);
  window.addEventListener("popstate", () => attempt(route));
  window.addEventListener("parlor:navigate", () => attempt(route));
  interceptLinks();
  wireSearch();
  registerWorker();
  // A notification clicked while Parlor is open: its page, without a reload.
  navigator.serviceWorker?.addEventListener("message", (event) => {
    const url = event.data?.type === "open" ? event.data.url : null;
    if (typeof url === "string" && url.startsWith("/") && !url.startsWith("//")) go(url);
  });
  const session = await attempt(() => auth.finishSignIn(auth.providerOf(state.config))) || auth.saved();
  if (session) await attempt(() => start(session));
  else await showSignIn();
}

boot();
