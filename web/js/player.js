// A Space over HLS in an <audio> element: the live playlist (a few seconds behind the
// room) or a replay. hls.js plays it wherever Media Source Extensions exist; the
// element's own HLS support only where they do not (iPhones before iOS 17.1). hls.js
// comes first even where the browser says it plays HLS itself ("maybe"): Chromium's own
// player plays the audio but exposes none of the playlist's EXT-X-DATERANGE tags, and
// those are how an HLS listener sees the stage. hls.js (from npm, pinned; no build
// step) is fetched only when a page plays HLS.
//
// The stage arrives as one EXT-X-DATERANGE per change, of class com.parlor.stage, dated
// on the media timeline (docs/media-contract.md, section 9). Safari's player and hls.js
// alike turn each date range into cues of a hidden "metadata" text track, one cue per
// attribute ({key: "X-STAGE", data: "u-alice=host,u-bob=speaker"}) timed from the
// range's start to the next one's: the cues active at the playhead are the stage the
// listener hears now.

const HLS_JS = "/vendor/hls.min.mjs";
const MPEGURL = "application/vnd.apple.mpegurl";
const STAGE_KEYS = ["X-STAGE", "X-SPEAKING", "X-MUTED"];

// A live playlist asked for before the Space's first segment is written answers 404
// for a moment (docs/hls.md); hls.js retries no 4xx by itself, so a live player asks
// again for about fifteen seconds before it gives up. Other failures (the network, a
// refusal) end the attempt at once: the page says so and offers to try again.
const LIVE_MANIFEST_RETRY = {
  maxNumRetry: 5, retryDelayMs: 1000, maxRetryDelayMs: 4000,
  shouldRetry: (config, count, timeout, response, retry) => retry
    || (response?.code === 404 && count < config.maxNumRetry),
};

export class PlaybackError extends Error {}

function ids(text) {
  return (text || "").split(",").map((id) => id.trim()).filter(Boolean);
}

// The stage of one date range's X-STAGE ("user=role" pairs), X-SPEAKING and X-MUTED
// (user ids), all comma-separated.
export function parseStage(values) {
  return {
    stage: ids(values["X-STAGE"]).map((pair) => {
      const [userId, role] = pair.split("=");
      return { user_id: userId, role };
    }),
    speaking: new Set(ids(values["X-SPEAKING"])),
    muted: new Set(ids(values["X-MUTED"])),
  };
}

function cueText(data) {
  if (typeof data === "string") return data;
  return data ? new TextDecoder().decode(data) : "";
}

function supportsMediaSource() {
  return "MediaSource" in window || "ManagedMediaSource" in window;
}

// Events: "playing" (sound began), "blocked" (the browser wants a gesture before
// sound), "stage" (detail: parseStage's answer, each time the stage heard changes) and
// "failed" (detail: {live}; the player is closed by then).
export class HlsPlayer extends EventTarget {
  constructor(audio) {
    super();
    this.audio = audio;
    this.hls = null;
    // How this browser plays it: "hls.js" or "native".
    this.engine = null;
    this.closed = false;
    this.live = false;
    this.stageKey = null;
    this.recoveredMedia = false;
    this.watching = new WeakSet();
    this.onTrack = (event) => this.watchTrack(event.track);
    this.onError = () => this.fail();
    this.onPlaying = () => this.dispatchEvent(new Event("playing"));
  }

  async load(url, { live = false, autoplay = false } = {}) {
    this.live = live;
    this.audio.textTracks.addEventListener("addtrack", this.onTrack);
    [...this.audio.textTracks].forEach((track) => this.watchTrack(track));
    this.audio.addEventListener("playing", this.onPlaying);
    let Hls = null;
    if (supportsMediaSource()) {
      try {
        ({ default: Hls } = await import(HLS_JS));
      } catch (_) {
        throw new PlaybackError("The audio player could not be loaded; check your connection.");
      }
      if (this.closed) return;
    }
    if (Hls?.isSupported()) {
      this.engine = "hls.js";
      this.playWithHlsJs(Hls, url, autoplay);
    } else if (this.audio.canPlayType(MPEGURL)) {
      this.engine = "native";
      this.audio.addEventListener("error", this.onError);
      this.audio.src = url;
      if (autoplay) this.play();
    } else {
      throw new PlaybackError("This browser cannot play this audio.");
    }
  }

  playWithHlsJs(Hls, url, autoplay) {
    const config = {};
    if (this.live) {
      config.manifestLoadPolicy = { default: {
        maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 20000,
        timeoutRetry: { maxNumRetry: 2, retryDelayMs: 0, maxRetryDelayMs: 0 },
        errorRetry: LIVE_MANIFEST_RETRY,
      } };
    }
    const hls = new Hls(config);
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal || hls !== this.hls) return;
      // A decoding hiccup: hls.js can rebuild its media pipeline once.
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !this.recoveredMedia) {
        this.recoveredMedia = true;
        hls.recoverMediaError();
        return;
      }
      this.fail();
    });
    if (autoplay) hls.on(Hls.Events.MANIFEST_PARSED, () => this.play());
    hls.loadSource(url);
    hls.attachMedia(this.audio);
  }

  play() {
    return this.audio.play().catch((error) => {
      if (error.name === "NotAllowedError") this.dispatchEvent(new Event("blocked"));
    });
  }

  watchTrack(track) {
    if (track.kind !== "metadata" || this.watching.has(track)) return;
    this.watching.add(track);
    // A disabled track keeps no active cues; hidden ones do, and show nothing.
    if (track.mode === "disabled") track.mode = "hidden";
    track.addEventListener("cuechange", () => this.readStage(track));
  }

  // Of the cues active now, those of the latest date range: a range lasts until the
  // next of its class starts, and both may be active for a moment.
  readStage(track) {
    const cues = [...(track.activeCues || [])].filter((cue) => STAGE_KEYS.includes(cue.value?.key));
    if (cues.length === 0 || this.closed) return;
    const start = Math.max(...cues.map((cue) => cue.startTime));
    const values = {};
    for (const cue of cues) {
      if (cue.startTime === start) values[cue.value.key] = cueText(cue.value.data);
    }
    if (!("X-STAGE" in values)) return;
    const key = STAGE_KEYS.map((name) => values[name] || "").join("\n");
    if (key === this.stageKey) return;
    this.stageKey = key;
    this.dispatchEvent(new CustomEvent("stage", { detail: parseStage(values) }));
  }

  fail() {
    if (this.closed) return;
    this.close();
    this.dispatchEvent(new CustomEvent("failed", { detail: { live: this.live } }));
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.audio.textTracks.removeEventListener("addtrack", this.onTrack);
    this.audio.removeEventListener("error", this.onError);
    this.audio.removeEventListener("playing", this.onPlaying);
    this.hls?.destroy();
    this.hls = null;
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load();
  }
}
