// A live Space's room: who is on stage (a ring lights around whoever speaks, from the
// node's data channel), listening, requests to speak, speaking, moderation; and the
// audio connection, which heals itself: when it is lost (media.js notices within about
// two seconds) the room joins again through the API, backing off with jitter, unless
// the person was removed or the Space ended.
//
// A listener may hear the Space over HLS instead (player.js), by choice or because
// WebRTC has no room for them (the join answers `transport: "hls"`): the stage then
// comes from the playlist's date ranges, in step with what they hear, and once brought
// on stage they join again over WebRTC, to be heard.

import { ApiError } from "./api.js";
import { AudioConnection, MediaError } from "./media.js";
import { HlsPlayer } from "./player.js";
import {
  $, ERROR_TEXT, attempt, avatar, copyLink, el, explain, handleOf, notify, personLink, state,
} from "./ui.js";

const ROLE_NAMES = { host: "Host", co_host: "Co-host", speaker: "Speaker", listener: "Listener" };
const ON_STAGE = ["host", "co_host", "speaker"];

// Rejoining after the audio is lost: the first try at once but for a little jitter (a
// node that dies takes a whole room with it, and its listeners should not all join in
// the same instant), then exponential backoff with jitter up to RETRY_CAP_MS. After
// GIVE_UP_MS without success the room says so and leaves it to the person.
const FIRST_RETRY_MS = 300;
const RETRY_BASE_MS = 1000;
const RETRY_CAP_MS = 15000;
const GIVE_UP_MS = 60000;
// A connection lost again this soon after a rejoin continues the backoff where it was.
const STABLE_MS = 30000;

export function retryDelay(attempt, random = Math.random) {
  if (attempt === 0) return random() * FIRST_RETRY_MS;
  const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

// What a rejoin cannot change: the person was removed or blocked, the Space is over or
// gone, or the session has ended. Anything else (no node, a full node, the network) may
// pass.
function isFinal(error) {
  if (error instanceof ApiError) {
    return [401, 403, 404].includes(error.status) || error.code === "space_not_live";
  }
  if (error instanceof MediaError) {
    return ["removed", "space_ended", "microphone_denied"].includes(error.code);
  }
  return false;
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

export class Room {
  // `onLeave`: the person left the Space (the page goes home).
  constructor(spaceId, view, { onLeave } = {}) {
    this.onLeave = onLeave;
    this.spaceId = spaceId;
    this.view = view;
    this.detail = null;
    this.connection = null;
    this.speaking = new Set();
    // Recovery: `recovering` while rejoining by itself; `finished` once the person was
    // removed or the Space ended (nothing to rejoin); `giveUpAfterMs` and `recoveries`
    // are read and set by the browser tests.
    this.recovering = false;
    this.finished = false;
    this.closed = false;
    this.recoveries = 0;
    this.giveUpAfterMs = GIVE_UP_MS;
    this.backoff = { attempt: 0, endedAt: 0 };
    this.spareMicrophone = null;
    this.audio = el("audio", { autoplay: true });
    this.audio.hidden = true;
    // HLS plays in an element of its own: a MediaSource and a WebRTC stream never
    // share one.
    this.hlsAudio = el("audio");
    this.hlsAudio.hidden = true;
    this.hlsAudio.dataset.hls = "";
    view.append(this.audio, this.hlsAudio);
    // Listening over HLS: the player, and the stage its date ranges say (null until
    // the first arrives). People named there are looked up once (`people`).
    this.player = null;
    this.hlsStage = null;
    this.people = new Map();
    this.recording = false;
    this.timer = setInterval(() => this.refresh(), 3000);
    this.wire();
  }

  get role() { return this.detail?.me?.role; }

  get moderator() { return this.role === "host" || this.role === "co_host"; }

  wire() {
    const on = (name, action) => $(`[data-action="${name}"]`, this.view)
      .addEventListener("click", () => attempt(action));
    const path = `/spaces/${this.spaceId}`;
    on("listen", () => this.listen());
    on("listen-hls", () => this.listen({ transport: "hls" }));
    on("leave", async () => { await state.api.post(`${path}/leave`); this.onLeave?.(); });
    on("copy-link", () => copyLink(`${location.origin}${path}`, $("[data-copied]", this.view)));
    on("request", () => state.api.post(`${path}/requests`).then(() => this.refresh()));
    on("cancel-request", () => state.api.delete(`${path}/requests`).then(() => this.refresh()));
    on("accept-invite", () => state.api.post(`${path}/invitation`, { accept: true }).then(() => this.refresh()));
    on("mute-self", () => this.setOwnMute(true));
    on("unmute-self", () => this.setOwnMute(false));
    on("step-down", () => state.api.post(`${path}/members/${state.tokens.userId}/demote`).then(() => this.refresh()));
    on("mute-all", () => state.api.post(`${path}/mute-all`).then(() => this.refresh()));
    on("end", async () => { await state.api.post(`${path}/end`); await this.refresh(); });
    this.view.querySelectorAll("[data-reaction]").forEach((button) => {
      button.addEventListener("click", () => this.connection?.sendReaction(button.dataset.reaction));
    });
    const byHandle = (selector, act) => $(selector, this.view).addEventListener("submit", (event) => {
      event.preventDefault();
      const handle = String(new FormData(event.target).get("handle"));
      attempt(async () => {
        const user = await state.api.get(`/users/by-handle/${encodeURIComponent(handle)}`);
        await act(user.user_id);
        event.target.reset();
        await this.refresh();
      });
    });
    byHandle("[data-invite-form]", (id) => state.api.post(`${path}/invitations/${id}`));
    byHandle("[data-cohost-form]", (id) => state.api.post(`${path}/co-hosts`, { user_id: id }));
    byHandle("[data-remove-form]", (id) => state.api.post(`${path}/members/${id}/remove`));
  }

  async setOwnMute(muted) {
    await state.api.put(`/spaces/${this.spaceId}/me/mute`, { muted });
    this.connection?.setMicrophoneEnabled(!muted);
    await this.refresh();
  }

  // The person asks for the audio (again): whatever ended the last connection is past.
  listen({ transport } = {}) {
    this.finished = false;
    return this.join(transport);
  }

  async join(transport) {
    if (this.connection || this.player) return;
    const joined = await state.api.post(`/spaces/${this.spaceId}/join`,
      transport ? { transport } : undefined);
    if (this.closed) return;
    if (joined.transport === "hls") {
      await this.listenOverHls(joined);
      return;
    }
    // The join answer says the role and mute of this moment: a speaker who rejoins comes
    // back on stage with the microphone, muted as they were.
    const connection = new AudioConnection(joined, this.audio, { microphone: this.spareMicrophone });
    this.spareMicrophone = null;
    const current = () => connection === this.connection;
    connection.addEventListener("room", (event) => { if (current()) this.onRoomEvent(event.detail); });
    connection.addEventListener("state", (event) => { if (current()) this.setAudioStatus(event.detail); });
    connection.addEventListener("autoplay-blocked", () => this.setAudioStatus("blocked"));
    connection.addEventListener("lost", () => { if (current()) this.recover(); });
    this.connection = connection;
    try {
      await connection.connect();
    } catch (error) {
      if (current()) this.connection = null;
      this.spareMicrophone = connection.close({ keepMicrophone: true });
      throw error;
    }
    connection.setMicrophoneEnabled(!joined.muted);
    await this.refresh();
  }

  async listenOverHls(joined) {
    const player = new HlsPlayer(this.hlsAudio);
    this.player = player;
    this.recording ||= joined.recording;
    const current = () => player === this.player;
    player.addEventListener("playing", () => { if (current()) this.setAudioStatus("hls"); });
    player.addEventListener("blocked", () => { if (current()) this.setAudioStatus("blocked"); });
    player.addEventListener("stage", (event) => {
      if (!current()) return;
      this.hlsStage = event.detail;
      this.renderStage();
    });
    player.addEventListener("failed", () => { if (current()) this.hlsFailed(); });
    this.setAudioStatus("connecting");
    this.renderControls();
    try {
      await player.load(joined.hls_url, { live: true, autoplay: true });
    } catch (error) {
      if (current()) this.hlsFailed(error.message);
      return;
    }
    await this.refresh();
  }

  // `reason`: what kept the player from starting, said instead of the usual words.
  hlsFailed(reason) {
    this.stopHls();
    this.setAudioStatus("hls-failed");
    if (reason) $("[data-audio]", this.view).textContent = `${reason} Press Listen to try again.`;
    this.renderControls();
    this.renderStage();
  }

  stopHls() {
    this.player?.close();
    this.player = null;
    this.hlsStage = null;
  }

  // An HLS listener hears nothing from the node, so it learns that it was brought on
  // stage from the API: the room reads the Space every few seconds anyway (the API's
  // WebSocket carries only the Spaces bar's events), and `me.role` there changes with
  // the approval. It then joins again, over WebRTC, with its microphone.
  async comeOnStage() {
    this.stopHls();
    this.setAudioStatus("connecting");
    await attempt(() => this.join());
  }

  // The audio is gone (the node or its worker died, the transport failed, or the node
  // asked for a rejoin): join again through the API, which names the node to use now.
  async recover() {
    if (this.recovering || this.finished || this.closed) return;
    this.recovering = true;
    this.recoveries += 1;
    const lost = this.connection;
    this.connection = null;
    if (lost) this.spareMicrophone = lost.close({ keepMicrophone: true }) || this.spareMicrophone;
    this.setAudioStatus("reconnecting");
    this.renderControls();
    const started = Date.now();
    let attempt = Date.now() - this.backoff.endedAt < STABLE_MS ? this.backoff.attempt : 0;
    for (;;) {
      const delay = retryDelay(attempt);
      if (Date.now() - started + delay > this.giveUpAfterMs) {
        this.giveUp();
        break;
      }
      await sleep(delay);
      if (!this.recovering) return;
      attempt += 1;
      try {
        await this.join();
        if (this.connection) break;
      } catch (error) {
        if (!this.recovering) return;
        if (isFinal(error)) {
          this.finish(explain(error), error instanceof ApiError && error.status === 409 ? "info" : "error");
          break;
        }
      }
    }
    this.recovering = false;
    this.backoff = { attempt, endedAt: Date.now() };
    this.renderControls();
  }

  giveUp() {
    this.spareMicrophone?.stop();
    this.spareMicrophone = null;
    this.setAudioStatus("gave-up");
    notify("The audio connection was lost and could not be restored. Press Listen to try again.");
  }

  // Nothing to rejoin: the person was removed, or the Space ended.
  finish(message, kind = "error") {
    this.finished = true;
    this.recovering = false;
    if (message) notify(message, kind);
    this.stopAudio();
  }

  setAudioStatus(status) {
    if (this.recovering && ["new", "connecting", "closed"].includes(status)) status = "reconnecting";
    const text = {
      connecting: "Connecting the audio…", connected: "You are in the audio.",
      reconnecting: "Reconnecting…",
      "gave-up": "The audio could not be restored. Press Listen to try again.",
      blocked: "Press Listen again to allow sound.", closed: "",
      hls: "You are listening over HLS, a few seconds behind the room.",
      "hls-failed": "The broadcast could not be loaded. Press Listen to try again.",
    }[status];
    if (text !== undefined) $("[data-audio]", this.view).textContent = text;
  }

  async onRoomEvent(message) {
    const me = state.tokens.userId;
    switch (message.type) {
      case "welcome":
        this.speaking = new Set(message.speaking);
        this.recording ||= Boolean(message.recording);
        this.renderRecording();
        break;
      case "speaking_started": this.speaking.add(message.user_id); break;
      case "speaking_stopped": this.speaking.delete(message.user_id); break;
      case "reaction": this.showReaction(message); return;
      case "role_changed":
        if (message.user_id === me && ON_STAGE.includes(message.role)) {
          await attempt(() => this.connection.enableMicrophone());
        }
        await this.refresh();
        return;
      case "muted": case "unmuted":
        if (message.user_id === me) this.connection?.setMicrophoneEnabled(message.type === "unmuted");
        await this.refresh();
        return;
      case "removed":
        if (message.user_id === me) this.finish(ERROR_TEXT.removed());
        await this.refresh();
        return;
      case "space_ended":
        this.finish("This Space has ended.", "info");
        await this.refresh();
        return;
      case "node_closing":
      case "rejoin":
        // The audio must come from elsewhere: the node is closing, or (rejoin) this
        // connection came through a relay that cannot carry a speaker's voice or lost
        // its feed. Joining again through the API places it where it now belongs.
        this.backoff = { attempt: 0, endedAt: 0 };
        await this.recover();
        return;
      default: return;
    }
    this.renderStage();
  }

  showReaction(message) {
    const feed = $("[data-reactions]", this.view);
    const person = this.detail?.stage.find((p) => p.user_id === message.user_id);
    feed.textContent = `${message.emoji} ${person ? handleOf(person) : ""}`;
  }

  stopAudio() {
    this.stopHls();
    this.recovering = false;
    this.connection?.close();
    this.connection = null;
    this.spareMicrophone?.stop();
    this.spareMicrophone = null;
    this.setAudioStatus("closed");
  }

  async refresh() {
    let detail;
    try {
      detail = await state.api.get(`/spaces/${this.spaceId}`);
    } catch (error) {
      notify(explain(error));
      return;
    }
    this.detail = detail;
    this.render();
    if (this.moderator && detail.state === "live") {
      const requests = await state.api.get(`/spaces/${this.spaceId}/requests`).catch(() => ({ items: [] }));
      this.renderRequests(requests.items);
    }
  }

  render() {
    const { detail, view } = this;
    const live = detail.state === "live";
    $("[data-state]", view).textContent = detail.state === "live" ? "● Live" : detail.state;
    $("[data-title]", view).textContent = detail.title;
    $("[data-host]", view).replaceChildren("Hosted by ", personLink(detail.host),
      detail.topics.length ? ` · ${detail.topics.join(", ")}` : "");
    $("[data-counts]", view).textContent = `${detail.speaker_count + detail.co_host_count + 1} on stage · ${detail.listener_count} listening`;
    // What the API says ends the audio as a data-channel notice would (the node holding
    // it may be gone): no rejoin after an end or a removal.
    const inAudio = Boolean(this.connection || this.player) || this.recovering;
    if (!this.finished && detail.me?.role === "removed" && inAudio) this.finish(ERROR_TEXT.removed());
    else if (!live && !this.finished) this.finish(inAudio ? "This Space has ended." : null, "info");
    else if (live && this.player && ON_STAGE.includes(detail.me?.role)) this.comeOnStage();
    this.renderRecording();
    this.renderControls();
    this.renderStage();
  }

  renderRecording() {
    const recorded = this.recording || Boolean(this.detail?.playback?.recording);
    $("[data-recording]", this.view).hidden = !recorded;
  }

  renderControls() {
    const { detail, view } = this;
    if (!detail) return;
    const live = detail.state === "live";
    const me = detail.me || {};
    const show = (name, visible) => { $(`[data-action="${name}"]`, view).hidden = !visible; };
    const onStage = ON_STAGE.includes(me.role);
    const idle = live && !this.connection && !this.player && !this.recovering && me.role !== "removed";
    show("listen", idle);
    // People on stage join over WebRTC, to be heard.
    show("listen-hls", idle && !onStage && detail.playback?.state === "live");
    show("leave", live && Boolean(me.role) && me.role !== "removed");
    show("request", live && me.role === "listener" && !me.requested_to_speak && !me.invited_to_speak);
    show("cancel-request", live && me.role === "listener" && me.requested_to_speak);
    show("accept-invite", live && me.role === "listener" && me.invited_to_speak);
    show("mute-self", live && onStage && !me.muted);
    show("unmute-self", live && onStage && me.muted);
    show("step-down", live && (me.role === "speaker" || me.role === "co_host"));
    $("[data-moderation]", view).hidden = !(live && this.moderator);
    $("[data-cohost-form]", view).hidden = me.role !== "host";
    show("end", live && me.role === "host");
    // Reactions travel on the node connection's data channel: without one (before
    // Listen, or listening over HLS) a press would go nowhere.
    $("[data-reaction-buttons]", view).hidden = !(live && this.connection);
  }

  // Over HLS, the stage the date ranges say, which is the one heard now (the API's is a
  // few seconds ahead); otherwise the API's, with the node's speaking events.
  stageNow() {
    if (!this.player || !this.hlsStage) {
      return this.detail.stage.map((person) => ({
        ...person, speaking: this.speaking.has(person.user_id) && !person.muted,
      }));
    }
    const { stage, speaking, muted } = this.hlsStage;
    return stage.map(({ user_id: userId, role }) => ({
      ...this.personOf(userId), user_id: userId, role, muted: muted.has(userId),
      speaking: speaking.has(userId) && !muted.has(userId),
    }));
  }

  // Who a user id on the HLS stage is: from the API's stage, or asked for once.
  personOf(userId) {
    const known = this.detail.stage.find((person) => person.user_id === userId) || this.people.get(userId);
    if (known) return known;
    this.people.set(userId, { user_id: userId });
    state.api.get(`/users/${encodeURIComponent(userId)}`).then((person) => {
      this.people.set(userId, person);
      this.renderStage();
    }).catch(() => {});
    return this.people.get(userId);
  }

  renderStage() {
    if (!this.detail) return;
    const path = `/spaces/${this.spaceId}`;
    const items = this.stageNow().map((person) => {
      const { speaking } = person;
      const label = `${handleOf(person)} · ${ROLE_NAMES[person.role]}${person.muted ? " · muted" : ""}${speaking ? " · speaking" : ""}`;
      const ring = el("span", { className: `ring${speaking ? " speaking" : ""}` }, avatar(person, "l"));
      const item = el("li", { className: speaking ? "speaking" : "" }, ring, el("span", { textContent: label }));
      item.dataset.userId = person.user_id;
      const mine = person.user_id === state.tokens.userId;
      if (this.moderator && !mine && person.role !== "host" && this.detail.state === "live") {
        const act = (text, action) => {
          const button = el("button", { type: "button", textContent: `${text} ${handleOf(person)}` });
          button.addEventListener("click", () => attempt(async () => { await action(); await this.refresh(); }));
          item.append(button);
        };
        if (!person.muted) act("Mute", () => state.api.post(`${path}/members/${person.user_id}/mute`));
        if (person.role === "speaker" || this.role === "host") {
          act("Move to audience", () => state.api.post(`${path}/members/${person.user_id}/demote`));
          act("Remove", () => state.api.post(`${path}/members/${person.user_id}/remove`));
        }
        if (this.role === "host" && person.role === "speaker") {
          act("Make co-host", () => state.api.post(`${path}/co-hosts`, { user_id: person.user_id }));
        }
      }
      return item;
    });
    $("[data-stage]", this.view).replaceChildren(...items);
  }

  renderRequests(requests) {
    const path = `/spaces/${this.spaceId}/requests`;
    $("[data-requests]", this.view).replaceChildren(...requests.map((person) => {
      const item = el("li", {}, el("span", { textContent: handleOf(person) }));
      for (const [text, verb] of [["Approve", "approve"], ["Deny", "deny"]]) {
        const button = el("button", { type: "button", textContent: `${text} ${handleOf(person)}` });
        button.addEventListener("click", () => attempt(async () => {
          await state.api.post(`${path}/${person.user_id}/${verb}`);
          await this.refresh();
        }));
        item.append(button);
      }
      return item;
    }));
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    this.stopAudio();
  }
}

