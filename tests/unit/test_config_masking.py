"""Secrets as ``***`` in every URL form and in free text; echoed values capped.

kombu's ``sanitize_url`` is not used (kombu 5.7): it writes ``**``, leaves ``redis://pw@host``
as it is, masks only the first URL of a Sentinel list (the second's password shows), drops the
whole query, garbles IPv6 hosts, raises on a password with an unencoded '/' and on a malformed
host, and shows most of the password of a URL without a scheme.
"""

from __future__ import annotations

import pytest

from workers.config.masking import clip, mask_text, mask_url, secrets_in, shown, url_secrets

PW = "s3cr3t-Kq7vZ"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"redis://:{PW}@host:6379/0", "redis://:***@host:6379/0"),
        (f"redis://user:{PW}@host:6379/0", "redis://user:***@host:6379/0"),
        # A password given as the user part: masked whole, a user name alone is no secret
        # worth the risk (older clients read it as the password).
        (f"redis://{PW}@host:6379/0", "redis://***@host:6379/0"),
        (f"rediss://:{PW}@host:6380/1", "rediss://:***@host:6380/1"),
        (f"unix://:{PW}@/var/run/redis.sock?db=1", "unix://:***@/var/run/redis.sock?db=1"),
        (f"amqp://user:{PW}@host:5672//", "amqp://user:***@host:5672//"),
        (f"amqps://user:{PW}@host/vhost?ssl=1", "amqps://user:***@host/vhost?ssl=1"),
        (
            f"sentinel://:{PW}@s1:26379/0;sentinel://user:{PW}@s2:26379/0",
            "sentinel://:***@s1:26379/0;sentinel://user:***@s2:26379/0",
        ),
        ("redis://:p%40ss%3Aw0rd@host/0", "redis://:***@host/0"),
        ("redis://user:p@ss@host/0", "redis://user:***@host/0"),  # an '@' left unencoded
        ("redis://:pa/ss#w@host/0", "redis://:***@host/0"),  # a '/' or '#' left unencoded
        (f"redis://host:6379/0?password={PW}&db=1", "redis://host:6379/0?password=***&db=1"),
        (f"redis://:{PW}@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        (f"redis://:{PW}@[::1/0", "redis://:***@[::1/0"),  # malformed: still masked
        (f"{PW}@host:6379", "***@host:6379"),  # no scheme at all
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host:6379/0", "redis://***@host:6379/0"),
    ],
)
def test_mask_url_hides_the_password_in_every_form(url: str, masked: str) -> None:
    # Act
    shown_url = mask_url(url)

    # Assert
    assert shown_url == masked
    assert PW not in shown_url and "pa/ss" not in shown_url and "p%40ss" not in shown_url


def test_mask_text_masks_urls_and_known_secrets_in_free_text() -> None:
    # Arrange
    text = (
        f"Error 111 connecting to redis://:{PW}@h:1/0. and amqp://u:{PW}2@h//; "
        f"the SASL password {PW}3 was refused; decoded p@ss too"
    )

    # Act
    masked = mask_text(text, {f"{PW}3", "p@ss", "pw"})

    # Assert
    assert masked == (
        "Error 111 connecting to redis://:***@h:1/0. and amqp://u:***@h//; "
        "the SASL password *** was refused; decoded *** too"
    )


def test_url_secrets_gives_the_raw_and_decoded_password() -> None:
    # Act
    found = url_secrets("redis://:p%40ss@h/0;redis://u:x2@h;redis://alone@h?token=t0k")

    # Assert
    assert found == {"p%40ss", "p@ss", "x2", "alone", "t0k"}


def test_secrets_in_reads_the_config_and_the_environment() -> None:
    # Arrange
    conf = {
        "broker_url": [f"redis://:{PW}1@h/0", "redis://h2/0"],
        "result_backend": f"redis://u:{PW}2@h/1",
        "workers_redis_url": f"rediss://{PW}3@h/2",
        "workers_kafka_clusters": {
            "c": {"sasl_plain_password": f"{PW}4", "producer": {"ssl_password": f"{PW}5"}},
            "broken": "not a mapping",
        },
    }
    environ = {
        "WORKERS_KAFKA_C_SASL_PLAIN_PASSWORD": f"{PW}6",
        "CELERY_BROKER_URL": f"redis://:{PW}7@h/0",
        "PATH": "/usr/bin",
    }

    # Act
    found = secrets_in(conf, environ)

    # Assert
    assert found == {f"{PW}{i}" for i in range(1, 8)}


def test_shown_caps_long_values_with_their_length() -> None:
    # Assert
    assert shown("x" * 201) == f"'{'x' * 200}'… (201 characters)"
    assert shown("\0" * 300) == "'" + "\\x00" * 50 + "'… (300 characters)"
    assert shown(10**400) == "1" + "0" * 199 + "… (401 characters)"
    assert shown(10**5000) == "<an integer of about 5001 digits>"
    assert shown(["a\n"] * 3) == "['a\\n', 'a\\n', 'a\\n']"
    assert clip("a\nb\x1bc") == "a\\nb\\x1bc"
    assert clip("y" * 300, 10) == "yyyyyyyyyy… (300 characters)"
