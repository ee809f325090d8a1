// The audio of a Space: one RTCPeerConnection to the Space's media node, set up the way
// the node expects (WHIP/WHEP-shaped: POST the whole offer once ICE gathering is done,
// with the join token; DELETE the session to leave). The audio transceiver is sendrecv
// from the start, so a listener who is promoted only attaches a microphone.

const GATHERING_TIMEOUT_MS = 3000;

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
  constructor(joined, audioElement) {
    super();
    this.joined = joined;
    this.audio = audioElement;
    this.microphone = null;
    this.session = null;
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
    });
    if (["host", "co_host", "speaker"].includes(this.joined.role)) await this.enableMicrophone();
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
  }

  async enableMicrophone() {
    if (this.microphone) return;
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

  async inboundAudioEnergy() {
    if (!this.pc) return 0;
    const stats = await this.pc.getStats();
    let energy = 0;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "audio") {
        energy += report.totalAudioEnergy || 0;
      }
    });
    return energy;
  }

  async close() {
    if (this.session) {
      fetch(this.session, { method: "DELETE" }).catch(() => {});
      this.session = null;
    }
    if (this.microphone) this.microphone.stop();
    this.pc?.close();
    this.audio.srcObject = null;
  }
}
