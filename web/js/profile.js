// A person's page, /@handle: avatar, name, bio, follower and following counts and lists,
// their live and scheduled Spaces, their replays, and Follow (which becomes Following),
// Mute Spaces and Block. Your own page edits your name, bio and avatar (the avatar goes
// from the browser straight to S3, a presigned POST: the API never sees the bytes) and
// deletes your replays.

import { ApiError } from "./api.js";
import { clock } from "./replay.js";
import {
  $, attempt, avatar, el, handleOf, notify, personLink, render, state, when,
} from "./ui.js";

const AVATAR_PIXELS = 256;

function personItem(person) {
  return el("li", {}, avatar(person, "s"), el("span", {}, personLink(person),
    el("span", { className: "hint", textContent: ` ${person.display_name}` })));
}

// A list of people, a page at a time.
async function list(view, name, userId, cursor) {
  const more = $(`[data-more="${name}"]`, view);
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  const page = await state.api.get(`/users/${userId}/${name}${query}`);
  const target = $(`[data-${name}]`, view);
  if (cursor) target.append(...page.items.map(personItem));
  else target.replaceChildren(...page.items.map(personItem));
  more.hidden = !page.next_cursor;
  more.onclick = () => attempt(() => list(view, name, userId, page.next_cursor));
}

function counts(view, user) {
  const followers = $("[data-followers-count]", view);
  const following = $("[data-following-count]", view);
  followers.replaceChildren(el("strong", { textContent: String(user.follower_count) }),
    user.follower_count === 1 ? " follower" : " followers");
  following.replaceChildren(el("strong", { textContent: String(user.following_count) }), " following");
}

function head(view, user) {
  $("[data-avatar]", view).replaceChildren(avatar(user, "xl"));
  $("[data-name]", view).textContent = user.display_name;
  $("[data-handle]", view).textContent = handleOf(user);
  $("[data-bio]", view).textContent = user.bio || "";
  counts(view, user);
}

async function spacesOf(view, user) {
  const items = [];
  if (user.live_space_id) {
    const live = await state.api.get(`/spaces/${user.live_space_id}`).catch(() => null);
    if (live?.state === "live") {
      items.push(el("li", { className: "space-item" }, el("span", { className: "state", textContent: "● Live " }),
        el("a", { href: `/spaces/${live.space_id}`, textContent: live.title }),
        el("span", { className: "hint", textContent: ` · ${live.listener_count} listening` })));
    }
  }
  const scheduled = await state.api.get(`/users/${user.user_id}/spaces/scheduled`).catch(() => ({ items: [] }));
  for (const space of scheduled.items) {
    items.push(el("li", { className: "space-item" },
      el("a", { href: `/spaces/${space.space_id}`, textContent: space.title }),
      el("span", { className: "hint", textContent: ` · starts ${when(space.scheduled_start)}` })));
  }
  $("[data-spaces]", view).replaceChildren(...items);
  $("[data-spaces-empty]", view).hidden = items.length > 0;
}

function replayItem(replay, mine) {
  const item = el("li", { className: "space-item" },
    el("span", { className: "space-text" },
      el("a", { href: `/spaces/${replay.space_id}`, textContent: replay.title }),
      el("span", { className: "hint",
        textContent: ` · ${when(replay.started_at || replay.ended_at)} · ${clock(replay.duration_seconds)}` })));
  if (!mine) return item;
  const remove = el("button", { type: "button", className: "secondary" }, "Delete replay",
    el("span", { className: "visually-hidden", textContent: `: ${replay.title}` }));
  remove.addEventListener("click", () => {
    // It cannot be undone: the recording's every segment goes.
    if (!window.confirm(`Delete the replay of "${replay.title}"? This cannot be undone.`)) return;
    attempt(async () => {
      await state.api.delete(`/spaces/${replay.space_id}/recording`);
      const list = item.parentElement;
      item.remove();
      if (list && !list.children.length) list.closest("[data-replays-section]").hidden = true;
      notify(`The replay of "${replay.title}" is deleted.`, "info");
    });
  });
  item.append(remove);
  return item;
}

// The person's replays, a page at a time; the section shows only when there are some.
async function replays(view, user, cursor) {
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  const page = await state.api.get(`/users/${user.user_id}/replays${query}`);
  const mine = user.user_id === state.tokens.userId;
  const target = $("[data-replays]", view);
  const items = page.items.map((replay) => replayItem(replay, mine));
  if (cursor) target.append(...items);
  else target.replaceChildren(...items);
  // A page may come back empty while more follow.
  if (!target.children.length && page.next_cursor) return replays(view, user, page.next_cursor);
  $("[data-replays-section]", view).hidden = target.children.length === 0;
  const more = $('[data-more="replays"]', view);
  more.hidden = !page.next_cursor;
  more.onclick = () => attempt(() => replays(view, user, page.next_cursor));
}

function actions(view, user, relation, redraw) {
  const box = $("[data-actions]", view);
  box.hidden = false;
  $("[data-follows-you]", view).hidden = !relation.followed_by;
  const button = (name) => $(`[data-action="${name}"]`, box);
  const follow = button("follow");
  follow.hidden = relation.blocked;
  follow.textContent = relation.following ? "Following" : "Follow";
  follow.setAttribute("aria-pressed", String(relation.following));
  follow.onclick = () => attempt(async () => {
    const path = `/users/${user.user_id}/follow`;
    const answer = relation.following ? await state.api.delete(path) : await state.api.put(path);
    await redraw(answer.user);
  });
  const mute = button("mute");
  mute.textContent = relation.muted ? "Unmute Spaces" : "Mute Spaces";
  mute.onclick = () => attempt(async () => {
    const path = `/me/muted/${user.user_id}`;
    if (relation.muted) await state.api.delete(path); else await state.api.put(path);
    await redraw();
  });
  const block = button("block");
  block.textContent = relation.blocked ? "Unblock" : "Block";
  block.onclick = () => attempt(async () => {
    const path = `/me/blocks/${user.user_id}`;
    const answer = relation.blocked ? await state.api.delete(path) : await state.api.put(path);
    if (!relation.blocked) notify(`You blocked ${handleOf(user)}: they can no longer follow you or join your Spaces.`, "info");
    await redraw(answer.user);
  });
}

// The picked image, cropped to a square and scaled down in the browser, as WebP where
// the browser writes it (else PNG): small enough for any policy.
async function squareImage(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (_) {
    throw new Error("That file is not an image this browser can read.");
  }
  const side = Math.min(bitmap.width, bitmap.height);
  const canvas = el("canvas", { width: AVATAR_PIXELS, height: AVATAR_PIXELS });
  canvas.getContext("2d").drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2,
    side, side, 0, 0, AVATAR_PIXELS, AVATAR_PIXELS);
  const blob = await new Promise((resolve) => { canvas.toBlob(resolve, "image/webp", 0.9); });
  if (blob?.type === "image/webp") return blob;
  return new Promise((resolve) => { canvas.toBlob(resolve, "image/png"); });
}

async function uploadAvatar(file) {
  const image = await squareImage(file);
  const upload = await state.api.post("/me/avatar", { content_type: image.type });
  const form = new FormData();
  for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
  form.append("file", image);
  let answer;
  try {
    answer = await fetch(upload.url, { method: "POST", body: form });
  } catch (_) {
    throw new Error("The avatar could not be uploaded; check your connection.");
  }
  if (!answer.ok) throw new Error(`The storage refused the avatar (${answer.status}).`);
  return state.api.put("/me/avatar", { key: upload.key });
}

function editor(view, user, redraw) {
  const section = $("[data-edit]", view);
  section.hidden = false;
  const form = $("[data-edit-form]", view);
  form.elements.display_name.value = user.display_name;
  form.elements.bio.value = user.bio || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    attempt(async () => {
      const saved = await state.api.put("/me", { handle: state.me.handle,
        display_name: String(data.get("display_name")), bio: String(data.get("bio")) });
      state.me = saved;
      notify("Your profile is saved.", "info");
      await redraw(saved);
    });
  });
  const status = $("[data-avatar-status]", view);
  const remove = $('[data-action="remove-avatar"]', view);
  remove.hidden = !user.avatar_url;
  remove.onclick = () => attempt(async () => {
    const saved = await state.api.delete("/me/avatar");
    status.textContent = "Your avatar is removed.";
    await redraw(saved);
  });
  $("#edit-avatar", view).addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (!file) return;
    status.textContent = "Uploading…";
    attempt(async () => {
      try {
        const saved = await uploadAvatar(file);
        status.textContent = "Your avatar is saved.";
        await redraw(saved);
      } catch (error) {
        status.textContent = "";
        throw error;
      } finally {
        event.target.value = "";
      }
    });
  });
}

export async function showProfile(handle) {
  const view = render("profile-template");
  let user;
  try {
    user = await state.api.get(`/users/by-handle/${encodeURIComponent(handle)}`);
  } catch (error) {
    render("not-found-template");
    notify(error instanceof ApiError && error.status === 404 ? `There is nobody called @${handle}.` : error.message);
    return;
  }
  document.title = `${user.display_name} (${handleOf(user)}) · Parlor`;
  const mine = user.user_id === state.tokens.userId;
  const redraw = async (fresh) => {
    const current = fresh || await state.api.get(`/users/${user.user_id}`);
    head(view, current);
    if (mine) $('[data-action="remove-avatar"]', view).hidden = !current.avatar_url;
    else actions(view, current, await state.api.get(`/users/${user.user_id}/relationship`), redraw);
    await Promise.all([list(view, "followers", user.user_id), list(view, "following", user.user_id)]);
  };
  head(view, user);
  if (mine) editor(view, user, redraw);
  await attempt(() => Promise.all([redraw(user), spacesOf(view, user), replays(view, user)]));
}
