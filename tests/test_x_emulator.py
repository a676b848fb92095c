"""The X API emulator answers like the real API: shapes and headers of the spec and recordings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from standins.x_emulator import XEmulator, compile_query
from conftest import require_shared

TWEET_FIELDS = "created_at,conversation_id,lang,referenced_tweets,in_reply_to_user_id,public_metrics"
EXPANSIONS = "author_id,referenced_tweets.id,in_reply_to_user_id"
AUTH = {"Authorization": "Bearer test-token"}


def _posts() -> list[dict]:
    posts = [
        {"text": f"@ShopHelp where is my parcel {i}?", "username": f"customer{i}", "name": f"Customer {i}",
         "followers": 10 * i, "created_at": f"2026-11-20T10:{i:02d}:00Z"}
        for i in range(25)
    ]
    posts.append({"text": "RT @ShopHelp great service", "username": "fan", "created_at": "2026-11-20T11:00:00Z",
                  "referenced_tweets": [{"type": "retweeted", "id": "1"}]})
    return posts


@pytest.fixture
def emulator():
    with XEmulator(_posts(), me={"username": "ShopHelp", "name": "Shop Help"}) as em:
        yield em


def _get(em: XEmulator, path: str, **params) -> requests.Response:
    return requests.get(em.base_url + path, params=params, headers=AUTH, timeout=5)


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(require_shared("x-api/openapi.json").read_text(encoding="utf-8"))


def _validate(spec: dict, schema_name: str, body: dict) -> None:
    import jsonschema

    # OpenAPI 3.0 schemas are draft-4 style (boolean exclusiveMinimum); $refs resolve in "components".
    validator = jsonschema.Draft4Validator({"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]})
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{schema_name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def _recorded(name: str) -> dict:
    return json.loads(require_shared(f"x-api/tweepy-recordings/{name}.json").read_text(encoding="utf-8"))[0]


# ------------------------------------------------------------------ spec conformance
def test_search_response_matches_spec_and_recording(emulator: XEmulator, spec: dict) -> None:
    response = _get(emulator, "/2/tweets/search/recent", query="@ShopHelp -is:retweet", max_results=10,
                    expansions=EXPANSIONS, **{"tweet.fields": TWEET_FIELDS, "user.fields": "username,name,public_metrics"})
    assert response.status_code == 200
    body = response.json()
    _validate(spec, "Get2TweetsSearchRecentResponse", body)
    recording = _recorded("search_recent_tweets")
    assert set(recording["headers"]) <= {h.lower() for h in response.headers}
    assert response.headers["content-type"] == recording["headers"]["content-type"][0]
    assert set(recording["body"]["meta"]) == set(body["meta"])
    assert set(recording["body"]["data"][0]) <= set(body["data"][0])
    assert body["meta"]["result_count"] == 10 and len(body["data"]) == 10
    users = {u["id"]: u for u in body["includes"]["users"]}
    assert all(t["author_id"] in users for t in body["data"])
    assert all("followers_count" in u["public_metrics"] for u in users.values())
    assert all(t["edit_history_tweet_ids"] == [t["id"]] for t in body["data"])


def test_fields_only_when_requested(emulator: XEmulator) -> None:
    body = _get(emulator, "/2/tweets/search/recent", query="parcel").json()
    assert set(body["data"][0]) == {"id", "text", "edit_history_tweet_ids"}
    assert "includes" not in body


def test_mentions_me_users_and_create_match_spec(emulator: XEmulator, spec: dict) -> None:
    me = requests.get(emulator.base_url + "/2/users/me", headers=AUTH, timeout=5)
    assert me.status_code == 200
    _validate(spec, "Get2UsersMeResponse", me.json())
    assert set(_recorded("get_me")["body"]["data"]) == set(me.json()["data"])
    user = _get(emulator, "/2/users/by/username/ShopHelp").json()
    _validate(spec, "Get2UsersByUsernameUsernameResponse", user)
    assert user["data"]["id"] == me.json()["data"]["id"]
    mentions = _get(emulator, f"/2/users/{user['data']['id']}/mentions", max_results=5,
                    expansions="author_id", **{"tweet.fields": TWEET_FIELDS})
    _validate(spec, "Get2UsersIdMentionsResponse", mentions.json())
    assert mentions.json()["meta"]["result_count"] == 5 and "next_token" in mentions.json()["meta"]

    created = requests.post(emulator.base_url + "/2/tweets", json={"text": "Sorry to hear that, DM us",
                            "reply": {"in_reply_to_tweet_id": mentions.json()["data"][0]["id"]}}, headers=AUTH, timeout=5)
    assert created.status_code == _recorded("create_and_delete_tweet")["status"]["code"] == 201
    _validate(spec, "TweetCreateResponse", created.json())
    tweets = _get(emulator, f"/2/users/{user['data']['id']}/tweets", expansions="author_id",
                  **{"tweet.fields": TWEET_FIELDS}).json()
    _validate(spec, "Get2UsersIdTweetsResponse", tweets)
    assert [t["id"] for t in tweets["data"]] == [created.json()["data"]["id"]]
    assert emulator.posted[0]["id"] == created.json()["data"]["id"]


def test_error_bodies_match_spec(emulator: XEmulator, spec: dict) -> None:
    emulator.inject("429")
    response = _get(emulator, "/2/tweets/search/recent", query="parcel")
    assert response.status_code == 429
    assert int(response.headers["x-rate-limit-reset"]) >= int(time.time())
    assert response.headers["x-rate-limit-remaining"] == "0"
    _validate(spec, "Problem", response.json())
    bad = _get(emulator, "/2/tweets/search/recent", query="parcel", max_results=500)
    assert bad.status_code == 400
    _validate(spec, "Problem", bad.json())
    assert "max_results" in bad.json()["detail"]


# ------------------------------------------------------------------ behaviour
def test_since_id_and_pagination_cover_every_post_once(emulator: XEmulator) -> None:
    seen: list[str] = []
    params = {"query": "parcel", "max_results": 10}
    while True:
        body = _get(emulator, "/2/tweets/search/recent", **params).json()
        seen += [t["id"] for t in body.get("data", [])]
        if "next_token" not in body["meta"]:
            break
        params["next_token"] = body["meta"]["next_token"]
    assert len(seen) == len(set(seen)) == 25
    assert seen == sorted(seen, key=int, reverse=True)
    newest = seen[0]
    assert _get(emulator, "/2/tweets/search/recent", query="parcel", since_id=newest).json() == {"meta": {"result_count": 0}}
    new_id = emulator.add_post({"text": "my parcel is late", "username": "late"})
    after = _get(emulator, "/2/tweets/search/recent", query="parcel", since_id=newest).json()
    assert [t["id"] for t in after["data"]] == [new_id]
    until = _get(emulator, "/2/tweets/search/recent", query="parcel", until_id=seen[5], max_results=10).json()
    assert [t["id"] for t in until["data"]] == seen[6:16]


def test_rate_limit_headers_count_down(emulator: XEmulator) -> None:
    first = _get(emulator, "/2/tweets/search/recent", query="parcel")
    second = _get(emulator, "/2/tweets/search/recent", query="parcel")
    assert int(first.headers["x-rate-limit-limit"]) == 450
    assert int(second.headers["x-rate-limit-remaining"]) == int(first.headers["x-rate-limit-remaining"]) - 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("@ShopHelp -is:retweet", 25),
        ("@ShopHelp", 26),
        ("from:customer3", 1),
        ('"parcel 1?" OR "parcel 2?"', 2),
        ("(parcel OR service) -from:fan", 25),
        ("is:retweet", 1),
        ("shophelp", 26),
        ("parce", 0),
    ],
)
def test_search_query_syntax(emulator: XEmulator, query: str, expected: int) -> None:
    body = _get(emulator, "/2/tweets/search/recent", query=query, max_results=100).json()
    assert body["meta"]["result_count"] == expected


def test_bad_query_is_400() -> None:
    with pytest.raises(ValueError):
        compile_query("(parcel OR")


@pytest.mark.parametrize("fault", ["500", "503", "401", "403"])
def test_status_faults(emulator: XEmulator, fault: str) -> None:
    emulator.inject(fault, count=2, path="/2/tweets/search")
    assert _get(emulator, "/2/users/me").status_code == 200  # other paths unaffected
    assert _get(emulator, "/2/tweets/search/recent", query="parcel").status_code == int(fault)
    assert _get(emulator, "/2/tweets/search/recent", query="parcel").status_code == int(fault)
    assert _get(emulator, "/2/tweets/search/recent", query="parcel").status_code == 200


def test_connection_faults(emulator: XEmulator) -> None:
    emulator.stall_s = 0.5
    emulator.inject("reset")
    with pytest.raises(requests.ConnectionError):
        _get(emulator, "/2/tweets/search/recent", query="parcel")
    emulator.inject("timeout")
    with pytest.raises(requests.ReadTimeout):
        requests.get(emulator.base_url + "/2/tweets/search/recent", params={"query": "parcel"}, headers=AUTH, timeout=0.2)
    emulator.inject("malformed")
    response = _get(emulator, "/2/tweets/search/recent", query="parcel")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    emulator.slow_s = 0.3
    emulator.inject("slow")
    started = time.monotonic()
    assert _get(emulator, "/2/tweets/search/recent", query="parcel").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_unauthenticated_requests_are_refused(emulator: XEmulator) -> None:
    assert requests.get(emulator.base_url + "/2/users/me", timeout=5).status_code == 401


def test_feed_with_mention_field_names(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    rows = [
        {"external_id": "a1", "text": "@ShopHelp my order 123 is late", "author_handle": "@jane", "author_followers": 40,
         "created_at": "2026-11-20T09:00:00Z"},
        {"external_id": "a2", "text": "@jane sorry, checking", "author_handle": "ShopHelp", "in_reply_to": "a1",
         "created_at": "2026-11-20T09:05:00Z"},
    ]
    feed.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with XEmulator.from_jsonl(feed, me={"username": "ShopHelp"}) as em:
        posts = {p["text"]: p for p in em.posts}
    root, reply = posts[rows[0]["text"]], posts[rows[1]["text"]]
    assert root["username"] == "jane" and int(reply["id"]) > int(root["id"])
    assert reply["conversation_id"] == root["id"]
    assert reply["referenced_tweets"] == [{"type": "replied_to", "id": root["id"]}]
    assert reply["in_reply_to_user_id"] == root["author_id"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "username": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl: line 2"):
        XEmulator.from_jsonl(bad)


def test_filtered_stream_delivers_matching_posts_with_rule_tags(emulator: XEmulator) -> None:
    import tweepy

    from doorstep.clients import x_streaming_client

    client = x_streaming_client(base_url=emulator.base_url)
    client.add_rules([tweepy.StreamRule("@ShopHelp", tag="doorstep:0")])
    assert [r.tag for r in client.get_rules().data] == ["doorstep:0"]
    received: list[tuple[str, list[str]]] = []

    class Collect(tweepy.StreamingClient):
        def on_response(self, response):  # noqa: ANN001
            received.append((response.data.id, [r.tag for r in response.matching_rules]))
            self.disconnect()

    stream = Collect("test-token")
    stream.session = client.session
    thread = stream.filter(threaded=True)
    deadline = time.monotonic() + 5
    while not emulator._stream_queues and time.monotonic() < deadline:
        time.sleep(0.02)
    post_id = emulator.add_post({"text": "@ShopHelp parcel never came", "username": "streamer"})
    emulator.add_post({"text": "unrelated", "username": "other"})
    thread.join(timeout=5)
    assert received == [(int(post_id), ["doorstep:0"])] or received == [(post_id, ["doorstep:0"])]


def test_doorstep_emulate_x_serves_a_feed_that_listen_ingests_with_threads(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    from conftest import REPO

    rows = [
        {"external_id": "1", "text": "@ShopHelp my order 55123 never came", "author_handle": "jane",
         "created_at": "2026-11-20T09:00:00Z"},
        {"external_id": "2", "text": "@jane sorry Jane, checking now", "author_handle": "ShopHelp", "in_reply_to": "1",
         "created_at": "2026-11-20T09:05:00Z"},
        {"external_id": "3", "text": "@ShopHelp thanks, it is order 55123", "author_handle": "jane", "in_reply_to": "2",
         "created_at": "2026-11-20T09:06:00Z"},
        {"external_id": "4", "text": "@ShopHelp love the new mugs", "author_handle": "sam",
         "created_at": "2026-11-20T09:07:00Z"},
    ]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = tmp_path / "doorstep.toml"
    config.write_text('[[brands]]\nname = "Shop"\nhandles = { x = "ShopHelp" }\n\n'
                      '[channels.x]\nqueries = ["@ShopHelp -is:retweet"]\naccounts = ["ShopHelp"]\n', encoding="utf-8")
    main = [sys.executable, "-c", "from commands.cli import main; main()"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "X_BEARER_TOKEN": "any"}
    emulator = subprocess.Popen([*main, "emulate", "x", "--feed", str(feed), "--port", "0", "--me", "ShopHelp"],
                                env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = emulator.stderr.readline() if emulator.stderr else ""
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        env["X_API_BASE_URL"] = match.group(0)
        listen = subprocess.run([*main, "--db", str(tmp_path / "d.db"), "--config", str(config), "listen", "x", "--once",
                                 "--classifier", "none"], env=env, capture_output=True, text=True, timeout=60)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    assert listen.returncode == 0, listen.stderr
    from doorstep.store import Store

    store = Store(tmp_path / "d.db")
    try:
        mentions = list(store.iter_mentions())
        assert len(mentions) == 4
        by_text = {m.text: m for m in mentions}
        root = by_text[rows[0]["text"]]
        thread = store.thread("x", root.thread_id)
        assert [m.text for m in thread] == [r["text"] for r in rows[:3]]
        assert [m.outbound for m in thread] == [False, True, False]
        assert store.count("cases") == 2
    finally:
        store.close()


def test_tweet_lookup_and_stream_rules_match_spec(emulator: XEmulator, spec: dict) -> None:
    post_id = emulator.posts[0]["id"]
    lookup = _get(emulator, f"/2/tweets/{post_id}", expansions="author_id", **{"tweet.fields": TWEET_FIELDS})
    _validate(spec, "Get2TweetsIdResponse", lookup.json())
    assert lookup.json()["data"]["id"] == post_id
    assert set(_recorded("get_tweet")["body"]["data"]) <= set(lookup.json()["data"])
    rules_url = emulator.base_url + "/2/tweets/search/stream/rules"
    added = requests.post(rules_url, json={"add": [{"value": "@ShopHelp", "tag": "doorstep:a"}]}, headers=AUTH, timeout=5)
    _validate(spec, "AddOrDeleteRulesResponse", added.json())
    listed = requests.get(rules_url, headers=AUTH, timeout=5).json()
    _validate(spec, "RulesLookupResponse", listed)
    assert [(r["value"], r["tag"]) for r in listed["data"]] == [("@ShopHelp", "doorstep:a")]
    deleted = requests.post(rules_url, json={"delete": {"ids": [listed["data"][0]["id"]]}}, headers=AUTH, timeout=5)
    _validate(spec, "AddOrDeleteRulesResponse", deleted.json())
    assert requests.get(rules_url, headers=AUTH, timeout=5).json()["meta"]["result_count"] == 0


def test_an_account_named_as_me_and_by_its_token_has_one_id() -> None:
    """Browser check of this stop: the demo names @LarkspurHelp as the emulator's ``me`` and by its access token;
    the two got two ids, so the X listener (which cached the first) took our own direct message, sent as the second,
    for a customer's and opened a case for "@LarkspurHelp"."""
    from standins.x_emulator import XEmulator

    em = XEmulator(me={"username": "LarkspurHelp"}, accounts={"tok-lark": {"username": "LarkspurHelp"},
                                                              "tok-fettle": {"username": "FettleCare"}})
    acting = em.acting_user('OAuth oauth_token="tok-lark"')
    assert acting is not None and acting["id"] == em.me["id"] == em.user("LarkspurHelp")["id"]  # type: ignore[index]
    assert em.user("FettleCare")["id"] != em.me["id"]  # type: ignore[index]
