"""`redis.url` parsing: a single server, a Sentinel set or a Cluster, and the URLs refused."""

import pytest

from cluster.redis_target import parse_redis_url


def test_plain_redis_url_names_a_single_server():
    target = parse_redis_url("redis://cache.internal:6380/2", cluster_mode=False)

    assert target.kind == "single"
    assert target.url == "redis://cache.internal:6380/2"


def test_rediss_url_names_a_single_server_over_tls():
    target = parse_redis_url("rediss://:secret@cache.internal:6380/0", cluster_mode=False)

    assert target.kind == "single"
    assert target.url == "rediss://:secret@cache.internal:6380/0"


def test_cluster_mode_with_a_plain_url_names_a_redis_cluster():
    target = parse_redis_url("redis://node-1.internal:7000", cluster_mode=True)

    assert target.kind == "cluster"
    assert target.url == "redis://node-1.internal:7000"


def test_sentinel_url_lists_every_sentinel_and_the_master_name():
    target = parse_redis_url(
        "redis+sentinel://s1.internal:26380,s2.internal:26381,s3.internal:26382/mymaster",
        cluster_mode=False,
    )

    assert target.kind == "sentinel"
    assert target.sentinels == (
        ("s1.internal", 26380),
        ("s2.internal", 26381),
        ("s3.internal", 26382),
    )
    assert target.master_name == "mymaster"
    assert target.db == 0
    assert target.password is None


def test_sentinel_without_a_port_defaults_to_26379():
    target = parse_redis_url("redis+sentinel://s1.internal,s2.internal:26390/mymaster", False)

    assert target.sentinels == (("s1.internal", 26379), ("s2.internal", 26390))


def test_sentinel_db_follows_the_master_name():
    target = parse_redis_url("redis+sentinel://s1.internal:26379/mymaster/3", False)

    assert target.master_name == "mymaster"
    assert target.db == 3


def test_sentinel_password_is_taken_from_the_url_and_unquoted():
    target = parse_redis_url("redis+sentinel://:s%40cret@s1.internal:26379,s2/mymaster", False)

    assert target.password == "s@cret"
    assert target.sentinels == (("s1.internal", 26379), ("s2", 26379))


def test_short_sentinel_scheme_is_accepted_too():
    target = parse_redis_url("sentinel://s1.internal:26379/mymaster", cluster_mode=False)

    assert target.kind == "sentinel"
    assert target.master_name == "mymaster"


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://s1.internal:26379", "redis+sentinel://s1.internal:26379/"],
)
def test_sentinel_url_without_a_master_name_is_refused(url):
    with pytest.raises(ValueError, match="master name"):
        parse_redis_url(url, cluster_mode=False)


def test_sentinel_url_with_an_empty_host_is_refused():
    with pytest.raises(ValueError, match="no Sentinel host"):
        parse_redis_url("redis+sentinel://s1.internal:26379,:26380/mymaster", False)


def test_sentinel_url_cannot_be_combined_with_cluster_mode():
    with pytest.raises(ValueError, match="cluster_mode"):
        parse_redis_url("redis+sentinel://s1.internal:26379/mymaster", cluster_mode=True)


@pytest.mark.parametrize("url", ["http://cache.internal:6379", "memcached://cache:11211"])
def test_unknown_scheme_is_refused(url):
    with pytest.raises(ValueError, match="unsupported Redis URL scheme"):
        parse_redis_url(url, cluster_mode=False)
