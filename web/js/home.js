// The home page: hosting (only what applies: the form for those who may host, and for
// those who may not why not and how far they are), the live Spaces, the upcoming ones
// of the people you follow, and your own scheduled Spaces.

import {
  $, attempt, avatar, el, go, handleOf, notify, render, state, when,
} from "./ui.js";

function spaceItem(space, ...extra) {
  const scheduled = space.state === "scheduled";
  const detail = scheduled ? `starts ${when(space.scheduled_start)}` : `${space.listener_count} listening`;
  return el("li", { className: "space-item" }, avatar(space.host, "s"),
    el("span", { className: "space-text" },
      el("a", { href: `/spaces/${space.space_id}`, textContent: space.title }),
      el("span", { className: "hint", textContent: ` by ${handleOf(space.host)} · ${detail}` })),
    ...extra);
}

function fill(view, name, items, map) {
  $(`[data-${name}]`, view).replaceChildren(...items.map(map));
  const empty = $(`[data-${name}-empty]`, view);
  if (empty) empty.hidden = items.length > 0;
}

function showHosting(view, eligibility) {
  const form = $("[data-create-form]", view);
  if (eligibility.eligible) {
    form.hidden = false;
    return;
  }
  const why = $("[data-ineligible]", view);
  why.hidden = false;
  $("[data-eligibility]", view).textContent = `You cannot host yet: ${eligibility.message}.`;
  const progress = $("[data-progress]", view);
  if (eligibility.reason === "not_enough_followers") {
    const missing = Math.max(0, eligibility.threshold - eligibility.follower_count);
    progress.max = eligibility.threshold;
    progress.value = eligibility.follower_count;
    $("[data-progress-text]", view).textContent =
      `${eligibility.follower_count} of ${eligibility.threshold} followers: ${missing} to go.`;
  } else {
    progress.hidden = true;
  }
}

export async function showHome() {
  const view = render("home-template");
  const form = $("[data-create-form]", view);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const topics = String(data.get("topics") || "").split(",").map((t) => t.trim()).filter(Boolean);
    const body = { title: String(data.get("title")), topics };
    if (data.get("start")) body.scheduled_start = new Date(String(data.get("start"))).getTime() / 1000;
    if (data.get("record")) body.record = true;
    attempt(async () => {
      const space = await state.api.post("/spaces", body);
      if (space.state === "live") state.autoJoin = space.space_id;
      else notify("Your Space is scheduled.", "info");
      go(`/spaces/${space.space_id}`);
    });
  });
  const lists = async () => {
    const [live, upcoming] = await Promise.all([
      state.api.get("/spaces/live").catch(() => null),
      state.api.get("/me/spaces/upcoming").catch(() => null),
    ]);
    if (!view.contains(form)) return;
    if (live) fill(view, "live", live.items, (s) => spaceItem(s));
    if (upcoming) fill(view, "upcoming", upcoming.items, (s) => spaceItem(s));
  };
  // While this page is shown, a change the bar hears of (a Space started or ended)
  // brings the lists up to date too.
  const changed = () => { if (view.contains(form)) lists(); else window.removeEventListener("parlor:spaces-changed", changed); };
  window.addEventListener("parlor:spaces-changed", changed);
  const [eligibility, , scheduled] = await Promise.all([
    attempt(() => state.api.get("/me/eligibility")),
    lists(),
    attempt(() => state.api.get(`/users/${state.tokens.userId}/spaces/scheduled`)),
  ]);
  if (!view.contains(form)) return; // another page was drawn meanwhile
  if (eligibility) showHosting(view, eligibility);
  if (scheduled?.items.length) {
    $("[data-scheduled-section]", view).hidden = false;
    fill(view, "scheduled", scheduled.items, (space) => {
      const start = el("button", { type: "button", className: "secondary" }, "Start now",
        el("span", { className: "visually-hidden", textContent: `: ${space.title}` }));
      start.addEventListener("click", () => attempt(async () => {
        await state.api.post(`/spaces/${space.space_id}/start`);
        state.autoJoin = space.space_id;
        go(`/spaces/${space.space_id}`);
      }));
      return spaceItem(space, start);
    });
  }
}
