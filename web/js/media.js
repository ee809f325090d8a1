// The audio of a Space: one RTCPeerConnection to the Space's media node, set up the way
// the node expects (WHIP/WHEP-shaped: POST the whole offer once ICE gathering is done,
// with the join token; DELETE the session to leave). The audio transceiver is sendrecv
// from the start, so a listener who is promoted only attaches a microphone.
//
// A connection watches itself: the node sends every participant 50 packets a second,
// silence included, so two seconds without a new packet means the audio is gone (a dead
// worker or node), long before ICE consent (about 30 s) would fail the transport. It
// then fires "lost" once; rejoining is the room's business.

const GATHERING_TIMEOUT_MS = 3000;
const WATCH_INTERVAL_MS = 250;
export const SILENCE_LIMIT_MS = 2000;
// Setting up the transport (ICE, DTLS) can take a while on a slow network or a busy
// machine: the watch for packets starts once it is connected, and a transport that
// never connects is lost after CONNECT_LIMIT_MS (or when it fails, if sooner).
const CONNECT_LIMIT_MS = 20000;
const FIRST_PACKET_LIMIT_MS = 5000;

export class MediaError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHERING_TIMEOUT_MS);
  });
}

export class AudioConnection extends EventTarget {
  constructor(joined, audioElement, { microphone = null } = {}) {
    super();
    this.joined = joined;
    this.audio = audioElement;
    // A rejoin hands over the microphone of the connection it replaces: no second prompt.
    this.microphone = microphone;
    this.session = null;
    this.closed = false;
    this.watch = null;
  }

  async connect() {
    const { media, token } = this.joined;
    const pc = new RTCPeerConnection({ iceServers: media.ice_servers });
    this.pc = pc;
    this.channel = pc.createDataChannel("events");
    this.channel.addEventListener("message", (event) => {
      this.dispatchEvent(new CustomEvent("room", { detail: JSON.parse(event.data) }));
    });
    this.transceiver = pc.addTransceiver("audio", { direction: "sendrecv" });
    pc.addEventListener("track", (event) => {
      this.audio.srcObject = event.streams[0] || new MediaStream([event.track]);
      this.audio.play().catch(() => this.dispatchEvent(new CustomEvent("autoplay-blocked")));
    });
    pc.addEventListener("connectionstatechange", () => {
      this.dispatchEvent(new CustomEvent("state", { detail: pc.connectionState }));
      if (pc.connectionState === "failed") this.lose("transport failed");
    });
    if (["host", "co_host", "speaker"].includes(this.joined.role)) await this.enableMicrophone();
    else if (this.microphone) {
      // Rejoined as a listener: the microphone handed over is no longer wanted.
      this.microphone.stop();
      this.microphone = null;
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const response = await fetch(media.url, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    const text = await response.text();
    if (response.status !== 201) {
      pc.close();
      let body = {};
      try { body = JSON.parse(text); } catch (_) { /* not JSON: keep the status */ }
      const message = body.error === "full" ? "This Space is full right now"
        : body.message || `The media node refused the connection (${response.status})`;
      throw new MediaError(body.error || "media_refused", message);
    }
    this.session = new URL(response.headers.get("Location"), media.url).toString();
    await pc.setRemoteDescription({ type: "answer", sdp: text });
    this.startWatching();
  }

  startWatching() {
    let last = -1;
    let since = null;
    const started = performance.now();
    const check = async () => {
      if (this.closed) return;
      const now = performance.now();
      if (since === null) {
        if (this.pc.connectionState === "connected") since = now;
        else if (now - started >= CONNECT_LIMIT_MS) this.lose("the transport never connected");
        return;
      }
      const packets = await this.packetsReceived();
      if (packets !== last) {
        last = packets;
        since = performance.now();
        return;
      }
      const limit = packets > 0 ? SILENCE_LIMIT_MS : FIRST_PACKET_LIMIT_MS;
      if (performance.now() - since >= limit) this.lose(packets > 0 ? "no audio for 2 s" : "no audio arrived");
    };
    this.watch = setInterval(() => { check().catch(() => {}); }, WATCH_INTERVAL_MS);
  }

  lose(reason) {
    if (this.closed || this.lostReason) return;
    this.lostReason = reason;
    clearInterval(this.watch);
    this.dispatchEvent(new CustomEvent("lost", { detail: reason }));
  }

  async enableMicrophone() {
    if (this.microphone) {
      if (this.transceiver.sender.track !== this.microphone) {
        await this.transceiver.sender.replaceTrack(this.microphone);
      }
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      throw new MediaError("microphone_denied",
        "Parlor could not use your microphone: allow it in the browser to speak");
    }
    this.microphone = stream.getAudioTracks()[0];
    await this.transceiver.sender.replaceTrack(this.microphone);
  }

  setMicrophoneEnabled(enabled) {
    if (this.microphone) this.microphone.enabled = enabled;
  }

  sendReaction(emoji) {
    if (this.channel?.readyState === "open") {
      this.channel.send(JSON.stringify({ type: "reaction", emoji }));
    }
  }

  async inboundAudio(field) {
    if (!this.pc) return 0;
    const stats = await this.pc.getStats();
    let total = 0;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio") total += report[field] || 0;
    });
    return total;
  }

  inboundAudioEnergy() { return this.inboundAudio("totalAudioEnergy"); }

  packetsReceived() { return this.inboundAudio("packetsReceived"); }

  // `keepMicrophone`: the microphone goes on to the connection that replaces this one.
  close({ keepMicrophone = false } = {}) {
    this.closed = true;
    clearInterval(this.watch);
    if (this.session) {
      fetch(this.session, { method: "DELETE" }).catch(() => {});
      this.session = null;
    }
    const microphone = this.microphone;
    this.microphone = null;
    if (microphone && !keepMicrophone) microphone.stop();
    this.pc?.close();
    this.audio.srcObject = null;
    return keepMicrophone ? microphone : null;
  }
}
