// A Space's own page, /spaces/{id}, which anyone can link to: the room while it is live;
// before, when it starts, with Remind me (or, for its host, Start now); after, that it
// has ended, and its replay if it was recorded (replay.js). Every state has Copy link.

import { Replay, clock } from "./replay.js";
import { Room } from "./room.js";
import {
  $, attempt, copyLink, explain, go, notify, personLink, render, state, timeElement,
} from "./ui.js";

// A scheduled Space's page looks again this often, to become the room when it starts.
const SCHEDULED_REFRESH_MS = 10000;
// A recorded Space's replay is written within seconds of its end (or, if its media node
// died, within about two minutes): until then its page looks again this often.
const REPLAY_REFRESH_MS = 3000;
const REPLAY_WAIT_S = 150;

export function leaveRoom() {
  state.room?.close();
  state.room = null;
  state.replay?.close();
  state.replay = null;
  window.parlorReplay = null;
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
  const { playback } = detail;
  if (scheduled) whenLine.replaceChildren("Starts ", timeElement(detail.scheduled_start));
  else if (playback.state === "replay") {
    $("[data-state]", view).textContent = "Replay";
    document.title = `${detail.title} (replay) · Parlor`;
    whenLine.replaceChildren("Recorded ", timeElement(detail.started_at || detail.ended_at),
      playback.duration_seconds ? ` · ${clock(playback.duration_seconds)}` : "");
    const section = $("[data-replay]", view);
    section.hidden = false;
    state.replay = new Replay(section, playback);
    window.parlorReplay = state.replay; // for the browser tests: which player plays it
    state.replay.load(playback.hls_url);
  } else if (awaitsReplay(detail)) whenLine.textContent = "This Space has ended. Its replay is being prepared.";
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

function awaitsReplay(detail) {
  return detail.state === "ended" && detail.playback.recording && detail.playback.state === "none"
    && Date.now() / 1000 - (detail.ended_at || 0) < REPLAY_WAIT_S;
}

// Looks at the Space again every `ms` while `unchanged` says so, and then shows it as
// it is now (if its page is still the one shown).
function watch(spaceId, ms, unchanged) {
  state.spaceTimer = setInterval(async () => {
    const now = await state.api.get(`/spaces/${spaceId}`).catch(() => null);
    if (now && !unchanged(now) && location.pathname === `/spaces/${spaceId}`) {
      await showSpace(spaceId);
    }
  }, ms);
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
    watch(spaceId, SCHEDULED_REFRESH_MS, (now) => now.state === "scheduled");
  } else if (awaitsReplay(detail)) {
    watch(spaceId, REPLAY_REFRESH_MS, (now) => awaitsReplay(now));
  }
}
