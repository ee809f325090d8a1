// A recorded Space's replay, on the Space's own page once it has ended: play and pause,
// a seek bar and the time, over the replay's HLS (player.js). The page's controls are
// the player's: the <audio> element itself stays hidden.

import { HlsPlayer } from "./player.js";
import { $, el } from "./ui.js";

// 75 -> "1:15", 3725 -> "1:02:05".
export function clock(seconds) {
  const whole = Math.max(0, Math.floor(Number.isFinite(seconds) ? seconds : 0));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export class Replay {
  // `section`: the page's [data-replay]; `playback`: the Space's, in state "replay".
  constructor(section, playback) {
    this.section = section;
    this.duration = playback.duration_seconds || 0;
    this.audio = el("audio", { preload: "auto" });
    this.audio.hidden = true;
    this.audio.dataset.hls = "";
    section.append(this.audio);
    this.button = $('[data-action="play"]', section);
    this.seek = $("[data-seek]", section);
    this.time = $("[data-time]", section);
    this.status = $("[data-player-status]", section);
    // While the person drags the seek bar, playback does not move it under them.
    this.dragging = false;
    this.player = new HlsPlayer(this.audio);
    this.wire();
    this.show(0);
  }

  wire() {
    const { audio, seek } = this;
    this.button.addEventListener("click", () => {
      if (!audio.paused) {
        audio.pause();
        return;
      }
      if (audio.ended) audio.currentTime = 0;
      this.player.play();
    });
    seek.addEventListener("input", () => {
      this.dragging = true;
      this.show(Number(seek.value));
    });
    seek.addEventListener("change", () => {
      this.dragging = false;
      audio.currentTime = Number(seek.value);
    });
    audio.addEventListener("loadedmetadata", () => {
      this.button.disabled = false;
      seek.disabled = false;
      this.status.textContent = "";
    });
    audio.addEventListener("durationchange", () => {
      if (Number.isFinite(audio.duration) && audio.duration > 0) this.duration = audio.duration;
      this.show(audio.currentTime);
    });
    audio.addEventListener("timeupdate", () => { if (!this.dragging) this.show(audio.currentTime); });
    for (const name of ["play", "pause", "ended"]) {
      audio.addEventListener(name, () => { this.button.textContent = audio.paused ? "Play" : "Pause"; });
    }
    this.player.addEventListener("blocked", () => {
      this.status.textContent = "Your browser held back the sound: press Play again.";
    });
    this.player.addEventListener("failed", () => this.failed());
  }

  async load(url) {
    this.status.textContent = "Loading the replay…";
    try {
      await this.player.load(url);
    } catch (error) {
      this.failed(error.message);
    }
  }

  failed(message = "The replay could not be loaded. Reload the page to try again.") {
    this.button.disabled = true;
    this.seek.disabled = true;
    this.status.textContent = message;
  }

  show(position) {
    const total = Math.round(this.duration);
    this.seek.max = String(total);
    if (!this.dragging) this.seek.value = String(Math.min(position, total));
    this.time.textContent = `${clock(position)} / ${clock(total)}`;
    this.seek.setAttribute("aria-valuetext", `${clock(position)} of ${clock(total)}`);
  }

  close() {
    this.player.close();
  }
}
