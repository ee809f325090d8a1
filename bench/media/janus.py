"""Janus's AudioBridge plugin under the media benchmark's load: `python -m bench.media.janus`.

The same load generator as the Parlor runs (`bench/media/loadgen.py`, its Janus mode):
one speaker sending the same pre-encoded Opus tone bursts, and lightweight aiortc
listeners (real ICE and DTLS, RTP counted at the UDP layer). Janus (Debian's `janus`
package, 1.1.x) runs from a config folder generated in a temporary directory with only
what is needed: the core with ICE on one local address (see `ice_address`), the HTTP
transport on a free port of 127.0.0.1, and the AudioBridge plugin; no other plugin,
transport, event handler or logger is loaded. It is pinned to the node's CPU, as the
Parlor node is.

What a "listener" is here: AudioBridge has no receive-only participant. Every listener
joins the room as a muted participant (`muted: true`), with a receive-only offer. The
plugin still treats it as a participant: it takes the room's mix minus that
participant's own (silent) voice and Opus-encodes it for that participant alone, so the
room pays one encode per listener per 20 ms where the Parlor node encodes the mix once
and fans the same packets out. That difference is what the comparison shows.

The room, created through the API (see `ROOM`): 48 kHz mixing (Opus fullband, as
Parlor's mixer), a mono mix (no spatial audio), 32 kbit/s per participant (Parlor's mix
bitrate; the plugin's default, 0, leaves it to libopus), prebuffering of 2 packets
(40 ms, what Parlor's mixer prefilled when this baseline was set up; the plugin's default
is 6, `--prebuffering 6` tries it), no recording, no audio-level events. Participants
keep the plugin's Opus complexity (`quality`, 4). The figures are `measure()`'s in
`harness.py`, as for the Parlor node; `python -m bench.media` measures Janus in each of
its rounds, this command on its own tries Janus's settings (janus.json).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aioice.ice import get_host_addresses

from .harness import (
    NODE_CPU,
    RESULTS,
    LoadGenerator,
    free_port,
    machine,
    measure,
    pinned,
    process_cpu,
    process_rss_mb,
    runqueue_wait,
)

JANUS = Path("/usr/bin/janus")
FANOUT = "janus-audiobridge"
PLUGIN = "janus.plugin.audiobridge"
# The room as created through the API; the comments in the module's docstring say why.
ROOM: dict[str, Any] = {
    "description": "parlor bench",
    "sampling_rate": 48000,
    "spatial_audio": False,
    "default_bitrate": 32000,
    "default_prebuffering": 2,
    "audiolevel_event": False,
    "record": False,
    "permanent": False,
}


def installed() -> bool:
    return JANUS.exists()


def library_folder() -> Path:
    """Where Debian put Janus's plugins and transports (a multiarch path)."""
    for folder in sorted(Path("/usr/lib").glob("*/janus")):
        if (folder / "plugins" / "libjanus_audiobridge.so").exists():
            return folder
    raise RuntimeError("janus is installed but its AudioBridge plugin was not found")


def ice_address() -> str:
    """The one address Janus gathers ICE candidates on: a local one, reached over `lo`.

    Neither side can use 127.0.0.1 itself: libnice (Janus's ICE) skips loopback
    interfaces (with `ice_enforce_list = "lo"` or `"127.0.0.1"` nothing matches and Janus
    falls back to gathering on every interface) and aioice leaves 127.0.0.1 out of the
    listeners' candidates. So Janus is held to the first IPv4 address aioice offers, as
    the Parlor runs are: an address of this machine's own, whose packets the kernel
    delivers through the loopback device (`ip route get` says `local ... dev lo`).
    """
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        raise RuntimeError("no local IPv4 address for ICE (aioice offers none either)")
    return addresses[0]


def write_config(folder: Path, http_port: int, event_loops: int = 0) -> Path:
    """A Janus config folder with only the core, the HTTP transport and the AudioBridge.

    Janus loads every library in its plugins and transports folders, so those folders
    are made here too, holding a link to the one library each that is wanted; the event
    handler and logger folders stay empty. `event_loops` 0 is Janus's default: a thread
    with an event loop of its own for each handle (each PeerConnection); a number
    shares that many loops among all handles.
    """
    library = library_folder()
    address = ice_address()
    for kind, name in (("plugins", "libjanus_audiobridge.so"), ("transports", "libjanus_http.so")):
        (folder / kind).mkdir()
        (folder / kind / name).symlink_to(library / kind / name)
    (folder / "events").mkdir()
    (folder / "loggers").mkdir()
    (folder / "janus.jcfg").write_text(
        f"""general: {{
\tconfigs_folder = "{folder}"
\tplugins_folder = "{folder / "plugins"}"
\ttransports_folder = "{folder / "transports"}"
\tevents_folder = "{folder / "events"}"
\tloggers_folder = "{folder / "loggers"}"
\tdebug_level = 4
\tdebug_timestamps = true
\tdebug_colors = false
\tserver_name = "parlor-bench"
\tsession_timeout = 60
\thide_dependencies = true
\tevent_loops = {event_loops}
\tprotected_folders = ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr"]
}}
certificates: {{
}}
media: {{
}}
nat: {{
\tnice_debug = false
\tfull_trickle = false
\tice_lite = false
\tice_tcp = false
\tignore_mdns = true
\tice_enforce_list = "{address}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
\tbroadcast = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
\tjson = "compact"
\tbase_path = "/janus"
\thttp = true
\tport = {http_port}
\tip = "127.0.0.1"
\thttps = false
\tevents = false
}}
admin: {{
\tadmin_http = false
\tadmin_https = false
}}
"""
    )
    (folder / "janus.plugin.audiobridge.jcfg").write_text("general: {\n\tevents = false\n}\n")
    return folder / "janus.jcfg"


def request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One Janus API call over HTTP: POST a body (with a fresh transaction), or GET."""
    data = None
    if body is not None:
        data = json.dumps({**body, "transaction": secrets.token_hex(6)}).encode()
    with urllib.request.urlopen(url, data=data, timeout=10) as response:  # noqa: S310
        reply: dict[str, Any] = json.loads(response.read())
    if reply.get("janus") not in ("success", "server_info"):
        raise RuntimeError(f"janus refused {body}: {reply}")
    return reply


class JanusServer:
    """`janus` from a generated config folder, pinned to the node's CPU."""

    def __init__(self, log_dir: Path, event_loops: int = 0) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="parlor-janus-"))
        port = free_port()
        config = write_config(self.folder, port, event_loops)
        self.url = f"http://127.0.0.1:{port}/janus"
        self.log = (log_dir / f"janus-{secrets.token_hex(3)}.log").open("wb")
        self.process = subprocess.Popen(
            [str(JANUS), "--config", str(config), "--configs-folder", str(self.folder)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned({NODE_CPU}),
        )
        self.mixer: int | None = None
        deadline = time.monotonic() + 30
        while True:
            try:
                self.info = request(f"{self.url}/info")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"janus did not start; see {self.log.name}") from None
                time.sleep(0.2)

    def create_room(self) -> int:
        """Create the benchmark's room through the API; the handle that made it goes."""
        session = request(self.url, {"janus": "create"})["data"]["id"]
        handle = request(f"{self.url}/{session}", {"janus": "attach", "plugin": PLUGIN})
        room = secrets.randbelow(2**31) + 1
        reply = request(
            f"{self.url}/{session}/{handle['data']['id']}",
            {"janus": "message", "body": {"request": "create", "room": room, **ROOM}},
        )
        data = reply["plugindata"]["data"]
        if data.get("audiobridge") != "created":
            raise RuntimeError(f"the room was not created: {data}")
        request(f"{self.url}/{session}", {"janus": "destroy"})
        self.mixer = mixer_thread(self.process.pid, room)
        return room

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def rss_mb(self) -> float:
        return process_rss_mb(self.process.pid)

    def waiting(self) -> float:
        # The room's mixer thread keeps its 20 ms clock, as the node's event loop does.
        assert self.mixer is not None, "the mixer thread is known once the room exists"
        return runqueue_wait(self.process.pid, self.mixer)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def mixer_thread(pid: int, room: int) -> int:
    """The thread id of the room's mixer, which AudioBridge names after the room."""
    name = f"mixer {room}"[:15]  # a thread's name holds 15 characters
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            return int(task.name)
    raise RuntimeError(f"no thread named {name!r} in janus")


def listener_settings(server: JanusServer, room: int, name: str) -> dict[str, Any]:
    """The load generator's settings for its Janus signaling mode."""
    return {"janus": {"url": server.url, "room": room}, "name": name}


def measure_janus(
    listeners: int, seconds: float, logs: Path, event_loops: int = 0
) -> dict[str, Any]:
    """One AudioBridge room, one speaker, `listeners` muted participants: the same steps
    and arithmetic as the Parlor node's runs, so the figures sit in the same table."""
    server = JanusServer(logs, event_loops)
    generators: list[LoadGenerator] = []
    try:
        room = server.create_room()
        speaker = LoadGenerator(listener_settings(server, room, "janus_s"))
        generators.append(speaker)
        load = LoadGenerator(listener_settings(server, room, "janus_l"))
        generators.append(load)
        result = measure(server, speaker, load, listeners, seconds)
    finally:
        for generator in generators:
            generator.stop()
        server.stop()
    return {
        "fanout": FANOUT,
        **result,
        "janus": {
            "version": server.info.get("version_string"),
            "event_loops": event_loops or "one per handle",
            "room": ROOM,
        },
    }


def not_measured(listeners: int, why: str) -> dict[str, Any]:
    """The results' entry when Janus is not measured."""
    return {"fanout": FANOUT, "listeners": listeners, "not_measured": why, "us_per_packet": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listeners", type=int, nargs="+", default=[100, 150])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--event-loops", type=int, default=0, help="Janus's event_loops (0: one per handle)"
    )
    parser.add_argument(
        "--prebuffering",
        type=int,
        default=ROOM["default_prebuffering"],
        help="the room's default_prebuffering, in 20 ms packets (the plugin's own default: 6)",
    )
    args = parser.parse_args()
    if not installed():
        parser.error(f"{JANUS} is missing; `make bench` installs Debian's package")
    ROOM["default_prebuffering"] = args.prebuffering
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "media-logs"
    logs.mkdir(exist_ok=True)
    started = time.time()
    runs = []
    for count in args.listeners:
        print(f"{FANOUT}, {count} listeners", flush=True)
        runs.append(measure_janus(count, args.seconds, logs, args.event_loops))
        print(f"  {json.dumps(runs[-1])}", flush=True)
    results = {
        "command": " ".join(["python -m bench.media.janus", *sys.argv[1:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_seconds": round(time.time() - started),
        "machine": machine(),
        "comparison": runs,
    }
    (args.out / "janus.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'janus.json'}")


if __name__ == "__main__":
    main()
