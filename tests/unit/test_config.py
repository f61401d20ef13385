"""The TOML cluster config: a bad entry is refused with a ConfigError naming it (R4, R5)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.config import (
    ClusterConfig,
    Priority,
    demo_config,
    load_config,
    parse_config,
)
from shared.errors import BlazeError, ConfigError

TWO_SERVERS = """
[timing]
network_timeout = 3.5
heartbeat_interval = 0.5

[[server]]
id = "rs-1"
capacity = 2

[[server]]
id = "rs-2"
capacity = 1
recording_dir = "/srv/rec/rs-2"

[[camera]]
id = "cam-1"
home = "rs-1"
priority = "high"

[[camera]]
id = "cam-2"
home = "rs-1"

[[camera]]
id = "cam-3"
home = "rs-2"
priority = "never"
"""


def refused(text: str) -> str:
    """The message of the ConfigError that ``text`` must raise."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cluster.toml")
    return str(caught.value)


def server(sid: str, capacity: object = 4, extra: str = "") -> str:
    """A ``[[server]]`` entry; ``capacity`` is written as TOML as given."""
    value = f'"{capacity}"' if isinstance(capacity, str) else str(capacity).lower()
    return f'[[server]]\nid = "{sid}"\ncapacity = {value}\n{extra}\n'


def camera(cid: str, home: str, extra: str = "") -> str:
    """A ``[[camera]]`` entry."""
    return f'[[camera]]\nid = "{cid}"\nhome = "{home}"\n{extra}\n'


def to_toml(config: ClusterConfig) -> str:
    """Write a config back as TOML, the way an operator would."""
    lines = ["[timing]"]
    lines += [f"{k} = {v}" for k, v in config.timing.model_dump().items()]
    for s in config.servers:
        lines += ["", server(s.id, s.capacity)]
    for c in config.cameras:
        lines += ["", camera(c.id, c.home, f'priority = "{c.priority}"')]
    return "\n".join(lines)


def test_r4_a_valid_config_parses_with_every_field() -> None:
    """R4: servers, capacities, homes, priorities and timing are read as written."""
    config = parse_config(TWO_SERVERS)
    assert [(s.id, s.capacity) for s in config.servers] == [("rs-1", 2), ("rs-2", 1)]
    assert config.server("rs-2").recording_dir == "/srv/rec/rs-2"
    assert [(c.id, c.home, c.priority) for c in config.cameras] == [
        ("cam-1", "rs-1", Priority.HIGH),
        ("cam-2", "rs-1", Priority.MEDIUM),
        ("cam-3", "rs-2", Priority.NEVER),
    ]
    assert config.timing.network_timeout == 3.5
    assert config.timing.heartbeat_interval == 0.5


def test_r2_timing_defaults_match_the_spec() -> None:
    """R1/R2: default heartbeat interval 1 s and network timeout 10 s."""
    config = parse_config(server("rs-1"))
    assert config.timing.heartbeat_interval == 1.0
    assert config.timing.network_timeout == 10.0


def test_server_lookup_of_an_unknown_id_raises_key_error() -> None:
    """Config contract (no R-number): ``server()`` finds an entry by id, refuses an unknown one."""
    config = parse_config(TWO_SERVERS)
    assert config.server("rs-1").capacity == 2
    with pytest.raises(KeyError):
        config.server("rs-9")


def test_r4_demo_config_is_valid_and_fits_its_capacity() -> None:
    """R4: the built-in demo is 4 servers of 16 channels, 12 cameras homed on each."""
    config = demo_config()
    assert [(s.id, s.capacity) for s in config.servers] == [(f"rs-{n}", 16) for n in range(1, 5)]
    assert Counter(c.home for c in config.cameras) == {f"rs-{n}": 12 for n in range(1, 5)}
    assert len({c.id for c in config.cameras}) == 48
    assert {c.priority for c in config.cameras} == {Priority.HIGH, Priority.MEDIUM, Priority.LOW}


def test_r4_demo_config_survives_a_round_trip_through_toml() -> None:
    """R4: the demo, written out as TOML, passes the same validation unchanged."""
    assert parse_config(to_toml(demo_config())) == demo_config()


def test_load_config_without_a_path_is_the_demo() -> None:
    """Config contract (no R-number): ``blaze up`` without ``--config`` runs the demo."""
    assert load_config(None) == demo_config()


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    """Config contract (no R-number): a config file on disk is parsed and validated."""
    path = tmp_path / "cluster.toml"
    path.write_text(TWO_SERVERS, encoding="utf-8")
    assert load_config(path) == parse_config(TWO_SERVERS)


def test_load_config_of_a_missing_file_names_the_path(tmp_path: Path) -> None:
    """Config contract (no R-number): an unreadable file is a ConfigError naming the path."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(path)


def test_load_config_names_the_file_of_a_bad_entry(tmp_path: Path) -> None:
    """Config contract (no R-number): the message of a bad file starts with its path."""
    path = tmp_path / "bad.toml"
    path.write_text(server("rs-1", -1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_config_error_is_a_blaze_error_that_a_retry_does_not_help() -> None:
    """Config contract (no R-number): a bad config is permanent; retrying cannot help."""
    with pytest.raises(ConfigError) as caught:
        parse_config("nonsense = [")
    assert isinstance(caught.value, BlazeError)
    assert caught.value.retryable is False


def test_invalid_toml_is_refused() -> None:
    """Config contract (no R-number): text that is not TOML is refused with the reason."""
    assert refused("[[server]\nid = 1").startswith("cluster.toml: not valid TOML:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('colour = "red"\n' + server("rs-1"), "cluster.toml: colour: unknown key"),
        (server("rs-1", extra="bogus = 2"), "[[server]] 'rs-1' key 'bogus': unknown key"),
        (
            server("rs-1") + camera("cam-1", "rs-1", "zoom = 3"),
            "[[camera]] 'cam-1' key 'zoom': unknown key",
        ),
        ("[timing]\nnetwork_timout = 3\n", "timing.network_timout: unknown key"),
    ],
    ids=["top-level", "server", "camera", "timing"],
)
def test_unknown_key_is_refused_naming_the_entry(text: str, expected: str) -> None:
    """Config contract (no R-number): a misspelt key is refused, naming entry and key."""
    assert expected in refused(text)


def test_r4_duplicate_server_id_is_refused() -> None:
    """R4: two servers with one id would make channel capacity ambiguous: refused."""
    msg = refused(server("rs-1", 1) + server("rs-2") + server("rs-1", 2))
    assert "duplicate server id 'rs-1'" in msg


def test_r4_duplicate_camera_id_is_refused() -> None:
    """R4: two cameras with one id would be placed as one: refused."""
    msg = refused(server("rs-1") + camera("cam-1", "rs-1") + camera("cam-1", "rs-1"))
    assert "duplicate camera id 'cam-1'" in msg


def test_r8_camera_homed_on_an_unknown_server_is_refused() -> None:
    """R4/R8: every camera needs a home server to fail back to."""
    msg = refused(server("rs-1") + camera("cam-7", "rs-9"))
    assert "camera 'cam-7': home server 'rs-9' is not a [[server]]" in msg


def test_r4_more_home_cameras_than_capacity_is_refused() -> None:
    """R4: nothing starts on a config that would put a server over its channel capacity."""
    text = server("rs-1", 2) + server("rs-2", 9)
    text += "".join(camera(f"cam-{i}", "rs-1") for i in range(3))
    assert "server 'rs-1': 3 cameras are homed on it, capacity is 2" in refused(text)


def test_r4_home_cameras_exactly_at_capacity_are_accepted() -> None:
    """R4: the capacity check is ``>``, not ``>=``: a full server is fine."""
    text = server("rs-1", 2) + camera("cam-1", "rs-1") + camera("cam-2", "rs-1")
    assert len(parse_config(text).cameras) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            server("rs-1", "ten"),
            "[[server]] 'rs-1' key 'capacity': Input should be a valid integer",
        ),
        (server("rs-1", 2.5), "[[server]] 'rs-1' key 'capacity': Input should be a valid integer"),
        (server("rs-1", -1), "[[server]] 'rs-1' key 'capacity': Input should be greater than"),
        (
            server("rs-1") + camera("cam-1", "rs-1", 'priority = "urgent"'),
            "[[camera]] 'cam-1' key 'priority': Input should be 'high', 'medium', 'low' or 'never'",
        ),
        ('[timing]\nnetwork_timeout = "soon"\n', "timing.network_timeout: Input should be a valid"),
        ("[timing]\nnetwork_timeout = 0\n", "timing.network_timeout: Input should be greater than"),
        ("[timing]\nprobe_tries = 0\n", "timing.probe_tries: Input should be greater than"),
        ('[[server]]\nid = "rs 1"\ncapacity = 1\n', "[[server]] 'rs 1' key 'id': String should"),
        (server("rs-1") + "[[server]]\ncapacity = 1\n", "[[server]] '#2' key 'id': Field required"),
        ("server = 5\n", "server: Input should be a valid tuple"),
        ('timing = "fast"\n', "timing: Input should be a valid dictionary"),
    ],
    ids=[
        "capacity-string",
        "capacity-float",
        "capacity-negative",
        "priority-unknown",
        "timeout-string",
        "timeout-zero",
        "probe-tries-zero",
        "id-with-space",
        "id-missing",
        "server-not-a-table",
        "timing-not-a-table",
    ],
)
def test_r2_r4_bad_type_or_value_is_refused_naming_the_entry(text: str, expected: str) -> None:
    """R2/R4: a wrong type or out-of-range value is refused, naming the entry and the key."""
    assert expected in refused(text)


def test_r4_every_problem_is_reported_at_once() -> None:
    """R4: two bad entries give one message with both, so the operator fixes them together."""
    msg = refused(server("rs-1", "x") + server("rs-2", -3))
    assert "[[server]] 'rs-1' key 'capacity'" in msg
    assert "[[server]] 'rs-2' key 'capacity'" in msg


def test_r4_boolean_capacity_is_refused() -> None:
    """R4: ``capacity = true`` is a type error, not one channel."""
    assert "[[server]] 'rs-1' key 'capacity'" in refused(server("rs-1", True))
