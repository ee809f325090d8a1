// The bar at the top: one avatar per live Space where people you follow are on stage,
// the Spaces with more of them first (the API's order), each with a ring that lights
// for whoever of them is speaking. It changes live over the WebSocket API: a Space
// starts, someone takes the stage, a Space ends; each start or new speaker also shows a
// toast. The socket is reopened with each renewed access token (API Gateway checks the
// token at connect only); polling stands in only while it is down.

import { $, avatar, el, handleOf, state, toast } from "./ui.js";

const POLL_MS = 5000;
// Who is speaking changes faster than anything the socket carries: while the bar shows
// Spaces and the page is in view, it is read again this often.
const SPEAKING_MS = 5000;
const ROLE = { host: "host", co_host: "co-host", speaker: "speaker" };

function item({ space, people }) {
  const faces = people.slice(0, 3).map((person) => {
    const ring = el("span", { className: `ring${person.speaking ? " speaking" : ""}` }, avatar(person, "m"));
    ring.dataset.userId = person.user_id;
    return ring;
  });
  const who = people.map((p) => `${handleOf(p)}${p.speaking ? " speaking" : ""}`).join(", ");
  const link = el("a", { href: `/spaces/${space.space_id}`, className: "bar-space" },
    el("span", { className: "faces" }, ...faces),
    el("span", { className: "bar-text" },
      el("span", { className: "bar-title", textContent: space.title }),
      el("span", { className: "bar-who", textContent: who }),
      el("span", { className: "bar-meta", textContent: `${space.listener_count} listening · ${people.map((p) => ROLE[p.role]).join(", ")}` })));
  const li = el("li", {}, link);
  li.dataset.spaceId = space.space_id;
  return li;
}

export async function refreshBar() {
  if (!state.api) return;
  let page;
  try {
    page = await state.api.get("/me/timeline/spaces");
  } catch (_) {
    return;
  }
  if (!state.api) return;
  $("#bar-list").replaceChildren(...page.items.map(item));
  $("#bar").hidden = page.items.length === 0;
}

function watchSpeaking() {
  clearInterval(state.speakingTimer);
  state.speakingTimer = setInterval(() => {
    if (!$("#bar").hidden && document.visibilityState === "visible") refreshBar();
  }, SPEAKING_MS);
}

const announced = new Set();

// "@alice started a Space", "@bob is speaking in ...": one toast per Space and person.
async function announce({ space_id: spaceId, person_id: personId }) {
  const key = `${spaceId}#${personId}`;
  if (announced.has(key) || state.room?.spaceId === spaceId) return;
  announced.add(key);
  let detail;
  try {
    detail = await state.api.get(`/spaces/${spaceId}`);
  } catch (_) {
    return;
  }
  if (detail.state !== "live") return;
  const person = detail.stage.find((p) => p.user_id === personId)
    || (detail.host.user_id === personId ? detail.host : null);
  const who = person ? handleOf(person) : "Someone you follow";
  const text = personId === detail.host.user_id
    ? `${who} started a Space: ${detail.title}`
    : `${who} is speaking in ${detail.title}`;
  toast(text, { href: `/spaces/${spaceId}`, label: "Listen" });
}

export function stopBar() {
  clearInterval(state.barTimer);
  clearInterval(state.speakingTimer);
  const socket = state.barSocket;
  state.barSocket = null;
  socket?.close();
  if (window.parlorBar) window.parlorBar.live = false;
  $("#bar").hidden = true;
}

export function connectBar() {
  clearInterval(state.barTimer);
  state.barSocket?.close();
  watchSpeaking();
  refreshBar();
  const poll = () => {
    clearInterval(state.barTimer);
    state.barTimer = setInterval(refreshBar, POLL_MS);
  };
  const url = state.config.websocket_url;
  if (!url) { poll(); return; }
  const socket = new WebSocket(`${url}?token=${encodeURIComponent(state.tokens.session.accessToken)}`);
  state.barSocket = socket;
  window.parlorBar = { live: false, messages: 0 }; // for the browser tests
  socket.addEventListener("open", () => {
    clearInterval(state.barTimer);
    window.parlorBar.live = true;
    refreshBar();
  });
  socket.addEventListener("message", (event) => {
    window.parlorBar.messages += 1;
    refreshBar();
    // Pages that list Spaces (home) read them again.
    window.dispatchEvent(new Event("parlor:spaces-changed"));
    let message = null;
    try { message = JSON.parse(event.data); } catch (_) { return; }
    if (message?.type === "timeline" && message.event === "added") announce(message);
  });
  socket.addEventListener("close", () => {
    if (state.barSocket !== socket) return;
    window.parlorBar.live = false;
    poll();
    setTimeout(() => state.api && state.barSocket === socket && connectBar(), POLL_MS);
  });
}
