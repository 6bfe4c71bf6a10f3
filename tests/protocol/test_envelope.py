"""The plain-WebSocket envelope and client actions: exact encodings, round trips, hostile input."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.protocol._envelope import (
    FILTER_KEYS,
    MAX_FILTER_VALUES,
    Action,
    Cursor,
    Envelope,
    Filter,
    Ping,
    Resume,
    Subscribe,
    Unsubscribe,
    decode_action,
    decode_envelope,
    encode_action,
    encode_envelope,
    error_envelope,
)
from omnirelay.protocol._errors import LocalProtocolError, RemoteProtocolError
from omnirelay.protocol._json import dumps, loads

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds" / "envelope"
AT = datetime(2026, 1, 10, 15, 30, tzinfo=UTC)


def code_of(decode: Any, text: str | bytes) -> str:
    """The code of the RemoteProtocolError `decode(text)` raises; any other exception escapes."""
    with pytest.raises(RemoteProtocolError) as info:
        decode(text)
    return info.value.code


# --------------------------------------------------------------------------------------------
# Encoding


def test_encoded_envelope_is_compact_json_in_a_fixed_key_order() -> None:
    frame = encode_envelope("user_online", {"user_id": 123456789}, AT)
    assert frame == (
        '{"event":"user_online","data":{"user_id":123456789},"timestamp":"2026-01-10T15:30:00Z"}'
    )


def test_seq_comes_last_and_timestamps_are_utc_seconds() -> None:
    almaty = datetime(2026, 1, 10, 20, 30, 0, 999_999, tzinfo=timezone(timedelta(hours=5)))
    frame = encode_envelope("new_chat", {"user_id": 1}, almaty, seq="k7Qe:42")
    assert frame == (
        '{"event":"new_chat","data":{"user_id":1},"timestamp":"2026-01-10T15:30:00Z",'
        '"seq":"k7Qe:42"}'
    )


@pytest.mark.parametrize("name", ["new_chat", "new_message", "user_typing", "message_read"])
def test_seed_frames_decode_to_what_encodes_them_again(name: str) -> None:
    text = (SEEDS / f"{name}.json").read_text("utf-8")
    envelope = decode_envelope(text)
    assert envelope.event == name
    assert loads(encode_envelope(envelope.event, envelope.data, envelope.timestamp)) == loads(text)


def test_error_envelope() -> None:
    frame = error_envelope("invalid_filter", "filter 'user_id' lists no values", AT)
    assert loads(frame) == {
        "event": "error",
        "data": {"code": "invalid_filter", "message": "filter 'user_id' lists no values"},
        "timestamp": "2026-01-10T15:30:00Z",
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timestamp": datetime(2026, 1, 10)}, "timezone-aware"),
        ({"event": ""}, "non-empty"),
        ({"data": {"x": object()}}, "not JSON-serialisable"),
        ({"seq": "no-colon"}, "seq"),
        ({"seq": "e:-1"}, "seq"),
    ],
)
def test_encoding_misuse_is_a_local_error(kwargs: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {"event": "x", "data": {}, "timestamp": AT, **kwargs}
    with pytest.raises(LocalProtocolError, match=match):
        encode_envelope(**arguments)


# --------------------------------------------------------------------------------------------
# Decoding envelopes


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "invalid_json"),
        ("{", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ("[]", "not_an_object"),
        ('"new_chat"', "not_an_object"),
        ('{"data":{},"timestamp":"2026-01-10T15:30:00Z"}', "invalid_envelope"),
        ('{"event":"","data":{},"timestamp":"2026-01-10T15:30:00Z"}', "invalid_envelope"),
        ('{"event":1,"data":{},"timestamp":"2026-01-10T15:30:00Z"}', "invalid_envelope"),
        ('{"event":"x","timestamp":"2026-01-10T15:30:00Z"}', "invalid_envelope"),
        ('{"event":"x","data":{}}', "invalid_envelope"),
        ('{"event":"x","data":{},"timestamp":"2026-01-10T15:30:00"}', "invalid_envelope"),
        ('{"event":"x","data":{},"timestamp":1768059000}', "invalid_envelope"),
        ('{"event":"x","data":{},"timestamp":"9999-12-31T23:59:59-05:00"}', "invalid_envelope"),
        ('{"event":"x","data":{},"timestamp":"2026-01-10T15:30:00Z","ts":1}', "invalid_envelope"),
        ('{"event":"x","data":{},"timestamp":"2026-01-10T15:30:00Z","seq":7}', "invalid_cursor"),
        (
            '{"event":"x","data":{},"timestamp":"2026-01-10T15:30:00Z","seq":"a:b"}',
            "invalid_cursor",
        ),
    ],
)
def test_malformed_envelopes_are_remote_errors_with_stable_codes(
    text: str | bytes, code: str
) -> None:
    assert code_of(decode_envelope, text) == code


EVENT_NAMES = st.text(alphabet=string.ascii_lowercase + "_:-", min_size=1, max_size=20)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)
EPOCHS = st.text(alphabet=string.ascii_letters + string.digits + "._~-", min_size=1, max_size=64)
CURSORS = st.builds(Cursor, EPOCHS, st.integers(min_value=0, max_value=2**64))
SECONDS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda at: at.replace(microsecond=0))


@settings(max_examples=200, deadline=None)
@given(event=EVENT_NAMES, data=JSON, at=SECONDS, seq=st.none() | CURSORS)
def test_envelopes_round_trip(event: str, data: Any, at: datetime, seq: Cursor | None) -> None:
    text = encode_envelope(event, data, at, seq=None if seq is None else str(seq))
    assert decode_envelope(text) == Envelope(event=event, data=data, timestamp=at, seq=seq)


# --------------------------------------------------------------------------------------------
# Cursors


def test_cursor_text_form() -> None:
    cursor = Cursor.parse("k7Qe:42")
    assert cursor == Cursor("k7Qe", 42)
    assert str(cursor) == "k7Qe:42"


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "e:",
        ":1",
        "e:-1",
        "e:+1",
        "e: 1",
        "e:01",
        "e:1.0",
        "e:1:2",
        "a b:1",
        "e:٣",
        "e:1_000",
        "e:" + "9" * 21,
        "x" * 65 + ":1",
    ],
)
def test_malformed_cursors_are_refused(text: str) -> None:
    assert code_of(Cursor.parse, text) == "invalid_cursor"


def test_socketio_offsets_may_name_part_of_an_event() -> None:
    assert Cursor.parse_offset("k7Qe:42") == (Cursor("k7Qe", 42), None)
    assert Cursor.parse_offset("k7Qe:42.0") == (Cursor("k7Qe", 42), 0)
    assert Cursor.parse_offset("a.b:42.1") == (Cursor("a.b", 42), 1)  # dots in the epoch
    assert Cursor.parse_offset("a.b:42") == (Cursor("a.b", 42), None)


@pytest.mark.parametrize("text", ["", "e:1.", "e:1.x", "e:1.01", "e:.1", "e.1", "e:1.2.3"])
def test_malformed_offsets_are_refused(text: str) -> None:
    assert code_of(lambda t: Cursor.parse_offset(t), text) == "invalid_cursor"


def test_building_an_invalid_cursor_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Cursor("has:colon", 1)
    with pytest.raises(LocalProtocolError):
        Cursor("e", -1)


@given(cursor=CURSORS)
def test_cursors_round_trip(cursor: Cursor) -> None:
    assert Cursor.parse(str(cursor)) == cursor


# --------------------------------------------------------------------------------------------
# Actions


@pytest.mark.parametrize(
    ("fixture", "action"),
    [
        ("action_subscribe", Subscribe(filter=Filter(user_id=123456789))),
        ("action_unsubscribe", Unsubscribe(filter=Filter(user_id=123456789))),
    ],
)
def test_seed_actions_decode(fixture: str, action: Action) -> None:
    assert decode_action((SEEDS / f"{fixture}.json").read_bytes()) == action


def test_filters_compare_values_by_their_string_form() -> None:
    by_int = decode_action('{"action":"subscribe","filter":{"user_id":123456789}}')
    by_str = decode_action('{"action":"subscribe","filter":{"user_id":["123456789"]}}')
    assert by_int == by_str
    assert isinstance(by_int, Subscribe)
    assert by_int.filter.user_id == frozenset({"123456789"})


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ('{"action":"ping"}', Ping()),
        ('{"action":"ping","id":7}', Ping(id=7)),
        (
            '{"action":"resume","since":"k7Qe:42","id":"r-1"}',
            Resume(since=Cursor("k7Qe", 42), id="r-1"),
        ),
        (
            '{"action":"subscribe","id":1,"filter":{"chat_id":["77079856339@c.us",-100123],'
            '"source":"whatsapp","event":["new_message","message_read"],"session_id":"s1"}}',
            Subscribe(
                id=1,
                filter=Filter(
                    chat_id={"77079856339@c.us", "-100123"},
                    source="whatsapp",
                    event={"new_message", "message_read"},
                    session_id="s1",
                ),
            ),
        ),
        ('{"action":"ping","id":null}', Ping()),
    ],
)
def test_actions_decode(text: str, action: Action) -> None:
    assert decode_action(text) == action


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "invalid_json"),
        ("subscribe", "invalid_json"),
        (b"\x80", "invalid_json"),
        ("[1]", "not_an_object"),
        ("null", "not_an_object"),
        ("{}", "invalid_action"),
        ('{"action":1}', "invalid_action"),
        ('{"action":"Subscribe","filter":{"user_id":1}}', "unknown_action"),
        ('{"action":"publish"}', "unknown_action"),
        ('{"action":"ping","filter":{}}', "unexpected_field"),
        ('{"action":"subscribe","filters":{"user_id":1}}', "unexpected_field"),
        ('{"action":"ping","id":true}', "invalid_id"),
        ('{"action":"ping","id":1.5}', "invalid_id"),
        ('{"action":"ping","id":{}}', "invalid_id"),
        ('{"action":"ping","id":' + str(2**63) + "}", "invalid_id"),
        ('{"action":"ping","id":"' + "x" * 257 + '"}', "invalid_id"),
        ('{"action":"ping","id":"\\ud800"}', "invalid_id"),
        ('{"action":"subscribe"}', "invalid_filter"),
        ('{"action":"subscribe","filter":{}}', "invalid_filter"),
        ('{"action":"subscribe","filter":[]}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user":1}}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user_id":[]}}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user_id":true}}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user_id":1.0}}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user_id":null}}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user_id":""}}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user_id":[[1]]}}', "invalid_filter"),
        ('{"action":"subscribe","filter":{"user_id":{"in":[1]}}}', "invalid_filter"),
        ('{"action":"unsubscribe","filter":{"source":"' + "w" * 257 + '"}}', "invalid_filter"),
        (
            '{"action":"subscribe","filter":{"user_id":'
            + dumps(list(range(MAX_FILTER_VALUES + 1)))
            + "}}",
            "invalid_filter",
        ),
        ('{"action":"resume"}', "invalid_cursor"),
        ('{"action":"resume","since":42}', "invalid_cursor"),
        ('{"action":"resume","since":"42"}', "invalid_cursor"),
    ],
)
def test_malformed_actions_are_remote_errors_with_stable_codes(
    text: str | bytes, code: str
) -> None:
    assert code_of(decode_action, text) == code


def test_errors_quote_only_a_short_prefix_of_the_input() -> None:
    huge = "A" * 100_000
    for text in (
        dumps({"action": huge}),
        dumps({"action": "ping", huge: 1}),
        dumps({"action": "subscribe", "filter": {huge: 1}}),
        dumps({"action": "subscribe", "filter": {"user_id": [huge]}}),
        dumps({"action": "resume", "since": huge}),
        dumps({"action": "ping", "id": huge}),
    ):
        with pytest.raises(RemoteProtocolError) as info:
            decode_action(text)
        assert len(str(info.value)) < 250


def test_filter_matches_when_every_constrained_key_matches() -> None:
    f = Filter(user_id=[123456789, "42"], source="telegram")
    assert f.matches({"user_id": "123456789", "source": "telegram", "chat_id": "x"})
    assert f.matches({"user_id": 42, "source": "telegram"})
    assert not f.matches({"user_id": 123456789, "source": "whatsapp"})
    assert not f.matches({"user_id": 7, "source": "telegram"})
    assert not f.matches({"source": "telegram"})
    assert not f.matches({"user_id": None, "source": "telegram"})


def test_an_empty_filter_cannot_be_built() -> None:
    with pytest.raises(LocalProtocolError, match="at least one key"):
        Filter()
    with pytest.raises(LocalProtocolError, match="zero values"):
        Filter(user_id=[])


SCALARS = st.integers(min_value=-(2**63), max_value=2**63) | st.text(min_size=1, max_size=12)
FILTERS = st.dictionaries(
    st.sampled_from(FILTER_KEYS), st.lists(SCALARS, min_size=1, max_size=4), min_size=1
).map(lambda values: Filter(**values))
IDS = st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=20)
ACTIONS = st.one_of(
    st.builds(Subscribe, filter=FILTERS, id=IDS),
    st.builds(Unsubscribe, filter=FILTERS, id=IDS),
    st.builds(Resume, since=CURSORS, id=IDS),
    st.builds(Ping, id=IDS),
)


@settings(max_examples=200, deadline=None)
@given(action=ACTIONS)
def test_actions_round_trip(action: Action) -> None:
    assert decode_action(encode_action(action)) == action


@settings(max_examples=200, deadline=None)
@given(f=FILTERS, values=st.dictionaries(st.sampled_from(FILTER_KEYS), st.none() | SCALARS))
def test_filter_matching_agrees_with_its_definition(
    f: Filter, values: dict[str, str | int | None]
) -> None:
    expected = all(
        values.get(key) is not None and str(values[key]) in getattr(f, key)
        for key in FILTER_KEYS
        if getattr(f, key) is not None
    )
    assert f.matches(values) is expected


# --------------------------------------------------------------------------------------------
# Garbage in, RemoteProtocolError out


def outcome(decode: Any, text: str | bytes) -> str:
    """ "decoded", or the code of the RemoteProtocolError; any other exception propagates."""
    try:
        decode(text)
    except RemoteProtocolError as exc:
        code = exc.code
    else:
        code = "decoded"
    assert code
    return code


@settings(max_examples=200, deadline=None)
@given(text=st.text() | st.binary())
def test_arbitrary_input_raises_only_remote_errors(text: str | bytes) -> None:
    outcome(decode_action, text)
    outcome(decode_envelope, text)


NEAR_MISS_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "subscribe",
            "unsubscribe",
            "resume",
            "ping",
            "k7Qe:42",
            "e:-1",
            "2026-01-10T15:30:00Z",
            "",
        ]
    )
)
NEAR_MISS_KEYS = st.sampled_from(
    ["action", "filter", "since", "id", "event", "data", "timestamp", "seq", *FILTER_KEYS]
) | st.text(max_size=6)
NEAR_MISS = st.recursive(
    NEAR_MISS_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(NEAR_MISS_KEYS, children, max_size=5)
    ),
    max_leaves=20,
)


def to_json(value: Any) -> str:
    # floats() includes NaN and Infinity; stdlib writes them as bare tokens, as a buggy peer might.
    return json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(value=NEAR_MISS)
def test_near_miss_json_raises_only_remote_errors(value: Any) -> None:
    text = to_json(value)
    outcome(decode_action, text)
    outcome(decode_envelope, text)
    outcome(decode_action, text.encode())
