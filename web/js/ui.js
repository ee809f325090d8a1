// What every page uses: the shared state, navigation, building elements, the alert
// region, errors in plain words, avatars, toasts.

import { ApiError } from "./api.js";

export const state = {
  config: null, tokens: null, api: null, me: null, room: null, replay: null, barTimer: null,
  barSocket: null,
};

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// Goes to a page of the client without reloading it (app.js listens).
export function go(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new Event("parlor:navigate"));
}

export function notify(message, kind = "error") {
  const box = $("#notice");
  box.textContent = message;
  box.classList.toggle("info", kind === "info");
  box.hidden = !message;
}

export const ERROR_TEXT = {
  not_eligible: (e) => `You cannot host yet: ${e.message}.`,
  speaker_limit: () => "The stage is full: a Space has at most 10 speakers.",
  co_host_limit: () => "A Space has at most 2 co-hosts.",
  no_media_node: () => "No audio server is available right now. Try again in a moment.",
  removed: () => "You were removed from this Space and cannot rejoin it.",
  already_hosting: () => "You are already hosting a live Space: end it before starting another.",
  blocked: (e) => (e.message.includes("host") ? "The host has blocked you." : "This account has blocked you."),
  space_not_live: (e) => (e.body.state === "ended" ? "This Space has ended." : "This Space is not live."),
  space_ended: () => "This Space has ended.",
};

export function explain(error) {
  if (error instanceof ApiError && ERROR_TEXT[error.code]) return ERROR_TEXT[error.code](error);
  return error.message || String(error);
}

export async function attempt(action) {
  try {
    notify("");
    return await action();
  } catch (error) {
    notify(explain(error));
    return undefined;
  }
}

export function render(templateId) {
  const view = $("#view");
  view.replaceChildren($(`#${templateId}`).content.cloneNode(true));
  return view;
}

export function handleOf(person) { return person.handle ? `@${person.handle}` : person.user_id; }

export function profilePath(person) { return person.handle ? `/@${person.handle}` : null; }

function initials(person) {
  const words = (person.display_name || person.handle || person.user_id || "?").trim().split(/\s+/);
  return words.slice(0, 2).map((w) => [...w][0]).join("").toUpperCase();
}

function hue(text) {
  let h = 0;
  for (const c of text) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

// A person's picture, or their initials in a circle of a colour of their own. Decorative:
// the person's name is always written beside it.
export function avatar(person, size = "m") {
  if (person.avatar_url) {
    return el("img", { className: `avatar avatar-${size}`, src: person.avatar_url, alt: "",
      loading: "lazy", decoding: "async" });
  }
  const circle = el("span", { className: `avatar avatar-${size} initials`, textContent: initials(person) });
  circle.setAttribute("aria-hidden", "true");
  circle.style.setProperty("--hue", hue(person.user_id || person.handle || ""));
  return circle;
}

export function personLink(person) {
  const path = profilePath(person);
  return path ? el("a", { href: path, textContent: handleOf(person) })
    : el("span", { textContent: handleOf(person) });
}

export function when(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function timeElement(epochSeconds) {
  const time = el("time", { textContent: when(epochSeconds) });
  time.dateTime = new Date(epochSeconds * 1000).toISOString();
  return time;
}

const TOAST_MS = 10000;

// A short message at the corner, read out politely, with a link; it goes by itself.
export function toast(message, { href, label } = {}) {
  const close = el("button", { type: "button", className: "secondary", textContent: "Dismiss" });
  const item = el("li", { className: "toast" }, el("span", { textContent: message }),
    href ? el("a", { href, textContent: label || "Open" }) : null, close);
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  item.querySelector("a")?.addEventListener("click", remove);
  $("#toasts").append(item);
  setTimeout(remove, TOAST_MS);
  return item;
}

// Copies the address of a page, and says so.
export async function copyLink(url, status) {
  try {
    await navigator.clipboard.writeText(url);
    status.textContent = "Link copied.";
  } catch (_) {
    status.textContent = `Copy this link: ${url}`;
  }
}
