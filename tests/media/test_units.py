"""The node's pure parts, without a network: voice activity, parsing."""

from __future__ import annotations

import pytest

from media_node.commands import CommandError, parse
from media_node.config import Config, ConfigError
from media_node.mixer import Speech, VoiceActivity


def test_voice_activity_has_hysteresis() -> None:
    vad = VoiceActivity(start_dbfs=-40, stop_dbfs=-50, start_frames=3, stop_frames=4)
    assert [vad.update(-20) for _ in range(3)] == [None, None, Speech.STARTED]
    # Between the thresholds, and brief dips: still speaking.
    assert [vad.update(level) for level in (-45, -60, -60, -30)] == [None] * 4
    assert [vad.update(-60) for _ in range(4)] == [None, None, None, Speech.STOPPED]
    assert vad.update(-30) is None
    assert vad.reset() is None


@pytest.mark.parametrize(
    "body",
    [
        "nope",
        "[]",
        '{"v": 2, "type": "end", "space_id": "s"}',
        '{"v": 1, "type": "explode", "space_id": "s"}',
        '{"v": 1, "type": "mute", "space_id": "s"}',
        '{"v": 1, "type": "role", "space_id": "s", "user_id": "u", "role": "admin"}',
    ],
)
def test_malformed_commands_are_refused(body: str) -> None:
    with pytest.raises(CommandError):
        parse(body)


def test_config_needs_a_key_and_valid_numbers() -> None:
    with pytest.raises(ConfigError):
        Config.from_env({})
    with pytest.raises(ConfigError):
        Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "CAPACITY": "lots"})
    with pytest.raises(ConfigError):
        Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "ANNOUNCED_ADDRESS": "example.com"})
    config = Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "PORT": "9000"})
    assert config.node_id.startswith("node-")
    assert config.public_url == "http://127.0.0.1:9000"
    assert config.command_queue_name == f"parlor-media-node-{config.node_id}"
