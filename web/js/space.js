// A Space's own page, /spaces/{id}, which anyone can link to: the room while it is live;
// before, when it starts, with Remind me (or, for its host, Start now); after, that it
// has ended. Every state has Copy link.

import { Room } from "./room.js";
import {
  $, attempt, copyLink, explain, go, notify, personLink, render, state, timeElement,
} from "./ui.js";

// A scheduled Space's page looks again this often, to become the room when it starts.
const SCHEDULED_REFRESH_MS = 10000;

export function leaveRoom() {
  state.room?.close();
  state.room = null;
  clearInterval(state.spaceTimer);
  window.parlorRoom = null;
}

async function showRoom(spaceId) {
  const view = render("room-template");
  const room = new Room(spaceId, view, { onLeave: () => { leaveRoom(); go("/"); } });
  state.room = room;
  window.parlorRoom = room; // for the browser tests: the audio statistics of this room
  await room.refresh();
  if (state.autoJoin === spaceId) {
    state.autoJoin = null;
    await attempt(() => room.listen());
  }
}

function showOutsideLive(detail) {
  const view = render("space-template");
  const spaceId = detail.space_id;
  const path = `/spaces/${spaceId}`;
  const mine = detail.host.user_id === state.tokens.userId;
  const scheduled = detail.state === "scheduled";
  $("[data-state]", view).textContent = scheduled ? "Scheduled" : "Ended";
  $("[data-title]", view).textContent = detail.title;
  $("[data-host]", view).replaceChildren("Hosted by ", personLink(detail.host),
    detail.topics.length ? ` · ${detail.topics.join(", ")}` : "");
  const whenLine = $("[data-when]", view);
  if (scheduled) whenLine.replaceChildren("Starts ", timeElement(detail.scheduled_start));
  else whenLine.textContent = "This Space has ended.";
  const button = (name) => $(`[data-action="${name}"]`, view);
  button("copy-link").addEventListener("click",
    () => copyLink(`${location.origin}${path}`, $("[data-copied]", view)));
  if (!scheduled) return;
  if (mine) {
    button("start-now").hidden = false;
    button("start-now").addEventListener("click", () => attempt(async () => {
      await state.api.post(`${path}/start`);
      state.autoJoin = spaceId;
      await showSpace(spaceId);
    }));
    button("cancel").hidden = false;
    button("cancel").addEventListener("click", () => attempt(async () => {
      await state.api.post(`${path}/end`);
      await showSpace(spaceId);
    }));
    return;
  }
  const remind = button("remind");
  const show = (on) => {
    remind.textContent = on ? "Reminder set" : "Remind me";
    remind.setAttribute("aria-pressed", String(on));
  };
  remind.hidden = false;
  state.api.get(`${path}/reminder`).then((r) => show(r.reminder)).catch(() => {});
  remind.addEventListener("click", () => attempt(async () => {
    const on = remind.getAttribute("aria-pressed") !== "true";
    const answer = on ? await state.api.put(`${path}/reminder`) : await state.api.delete(`${path}/reminder`);
    show(answer.reminder);
  }));
}

export async function showSpace(spaceId) {
  leaveRoom();
  let detail;
  try {
    detail = await state.api.get(`/spaces/${spaceId}`);
  } catch (error) {
    render("not-found-template");
    notify(explain(error));
    return;
  }
  if (detail.state === "live") {
    await showRoom(spaceId);
    return;
  }
  showOutsideLive(detail);
  if (detail.state === "scheduled") {
    state.spaceTimer = setInterval(async () => {
      const now = await state.api.get(`/spaces/${spaceId}`).catch(() => null);
      if (now && now.state !== "scheduled" && location.pathname === `/spaces/${spaceId}`) {
        await showSpace(spaceId);
      }
    }, SCHEDULED_REFRESH_MS);
  }
}
