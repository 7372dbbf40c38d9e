"""Client frame schemas (SPEC §4): every valid type parses, every bad frame says which field."""

import json

import pytest

from rooms.protocol import MESSAGE_TYPES, parse
from rooms.services.chat import MAX_CHAT_LENGTH


def frame(**fields) -> str:
    return json.dumps(fields)


VALID_FRAMES = [
    ({"type": "ping", "client_time": 1764151200123}, {"client_time": 1764151200123}),
    ({"type": "play"}, {"position": None}),
    ({"type": "play", "position": 12.5}, {"position": 12.5}),
    ({"type": "pause", "position": 0}, {"position": 0}),
    ({"type": "seek", "position": 90}, {"position": 90}),
    ({"type": "rate", "rate": 0.25}, {"rate": 0.25}),
    ({"type": "rate", "rate": 4}, {"rate": 4}),
    ({"type": "set_movie", "movie_id": "m1"}, {"movie_id": "m1"}),
    ({"type": "chat", "text": "hi"}, {"text": "hi"}),
    ({"type": "chat", "text": "x" * MAX_CHAT_LENGTH}, {"text": "x" * MAX_CHAT_LENGTH}),
    ({"type": "sync"}, {}),
]


@pytest.mark.parametrize(("raw", "expected"), VALID_FRAMES)
def test_valid_frame_parses_with_its_fields(raw, expected):
    message, req_id, problem = parse(json.dumps(raw))

    assert problem is None
    assert message.type == raw["type"]
    for name, value in expected.items():
        assert getattr(message, name) == value


def test_every_message_type_of_the_spec_is_covered():
    assert {raw["type"] for raw, _ in VALID_FRAMES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("req_id", ["r-1", 42])
def test_req_id_is_returned_with_a_valid_frame(req_id):
    message, returned, problem = parse(frame(type="sync", req_id=req_id))

    assert problem is None
    assert returned == req_id
    assert message.req_id == req_id


def test_unknown_extra_fields_are_ignored():
    message, _, problem = parse(frame(type="ping", client_time=1, extra="x"))

    assert problem is None
    assert message.type == "ping"


# Frames that are not messages at all


def test_malformed_json_is_refused():
    message, req_id, problem = parse('{"type": "seek", ')

    assert message is None
    assert req_id is None
    assert "malformed JSON" in problem


@pytest.mark.parametrize("text", ["[1, 2]", '"seek"', "42", "null"])
def test_json_that_is_not_an_object_is_refused(text):
    message, _, problem = parse(text)

    assert message is None
    assert "object" in problem and "type" in problem


def test_missing_type_is_refused_naming_type():
    message, req_id, problem = parse(frame(position=1, req_id="r-2"))

    assert message is None
    assert req_id == "r-2"
    assert "type" in problem
    assert "seek" in problem  # the sentence lists what is allowed


@pytest.mark.parametrize("kind", ["teleport", 5, None, ["seek"], {"a": 1}])
def test_unknown_type_is_refused_naming_type(kind):
    message, req_id, problem = parse(frame(type=kind, req_id="r-3"))

    assert message is None
    assert req_id == "r-3"
    assert "type" in problem
    assert "seek" in problem


# Bad fields: the problem names the field, req_id is recovered


BAD_FIELDS = [
    ('{"type": "seek", "position": NaN}', "position"),
    ('{"type": "seek", "position": Infinity}', "position"),
    ('{"type": "play", "position": -Infinity}', "position"),
    ('{"type": "pause", "position": 1e400}', "position"),
    ('{"type": "seek", "position": -1}', "position"),
    ('{"type": "seek", "position": "12"}', "position"),
    ('{"type": "seek", "position": true}', "position"),
    ('{"type": "seek", "position": null}', "position"),
    ('{"type": "seek"}', "position"),
    ('{"type": "play", "position": "soon"}', "position"),
    ('{"type": "rate", "rate": 0.2}', "rate"),
    ('{"type": "rate", "rate": 4.01}', "rate"),
    ('{"type": "rate", "rate": "fast"}', "rate"),
    ('{"type": "rate", "rate": NaN}', "rate"),
    ('{"type": "rate"}', "rate"),
    ('{"type": "chat", "text": ""}', "text"),
    (json.dumps({"type": "chat", "text": "x" * (MAX_CHAT_LENGTH + 1)}), "text"),
    ('{"type": "chat", "text": 5}', "text"),
    ('{"type": "chat"}', "text"),
    ('{"type": "set_movie", "movie_id": 5}', "movie_id"),
    ('{"type": "set_movie", "movie_id": ["m1"]}', "movie_id"),
    ('{"type": "set_movie", "movie_id": ""}', "movie_id"),
    ('{"type": "set_movie"}', "movie_id"),
    ('{"type": "ping", "client_time": "now"}', "client_time"),
]


@pytest.mark.parametrize(("text", "field"), BAD_FIELDS)
def test_bad_field_is_refused_naming_the_field(text, field):
    with_req_id = text[:-1] + ', "req_id": "r-9"}'

    message, req_id, problem = parse(with_req_id)

    assert message is None
    assert field in problem
    assert req_id == "r-9"


def test_numeric_req_id_is_recovered_from_a_bad_frame():
    _, req_id, problem = parse(frame(type="seek", position=-1, req_id=7))

    assert problem is not None
    assert req_id == 7


@pytest.mark.parametrize("req_id", [True, {"a": 1}, "r" * 65])
def test_unusable_req_id_is_not_echoed(req_id):
    _, returned, problem = parse(frame(type="sync", req_id=req_id))

    assert returned is None
    assert "req_id" in problem
