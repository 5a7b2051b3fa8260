"""Settings: defaults, parsing, and messages that name the variable."""

import pytest

from bot.config import MAX_SIGNED_URL_TTL, Config, SettingError


def test_defaults():
    config = Config.from_env({})
    assert config.google.model.startswith("gemini")  # every Imagen model is shut down
    assert config.google.location == "us-central1"
    assert config.openai.model.startswith("gpt-image")
    assert config.store.gcs_url_mode == "signed"
    assert config.store.gcs_signed_url_ttl == MAX_SIGNED_URL_TTL
    assert config.store.keep_provider_urls is False
    assert config.slack.port == 3000
    assert config.database_url == "sqlite:///imagine.db"
    assert config.openai.partial_images == 2
    assert Config.from_env({"OPENAI_PARTIAL_IMAGES": "0"}).openai.partial_images == 0


@pytest.mark.parametrize(("value", "seconds"), [("3600", 3600), ("12h", 43200), ("7d", 604800)])
def test_ttl_units(value, seconds):
    assert Config.from_env({"GCS_SIGNED_URL_TTL": value}).store.gcs_signed_url_ttl == seconds


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"GCS_SIGNED_URL_TTL": "8d"}, "GCS_SIGNED_URL_TTL"),
        ({"GCS_SIGNED_URL_TTL": "soon"}, "GCS_SIGNED_URL_TTL"),
        ({"GCS_URL_MODE": "private"}, "GCS_URL_MODE"),
        ({"KEEP_PROVIDER_URLS": "maybe"}, "KEEP_PROVIDER_URLS"),
        ({"PORT": "http"}, "PORT"),
        ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY"),
        ({"WEB_CONCURRENCY": "1.5"}, "WEB_CONCURRENCY"),
        ({"IMAGINE_HTTP_THREADS": "0"}, "IMAGINE_HTTP_THREADS"),
        ({"LOG_LEVEL": "bogus"}, "LOG_LEVEL"),
        ({"OPENAI_PARTIAL_IMAGES": "4"}, "OPENAI_PARTIAL_IMAGES"),
        ({"OPENAI_PARTIAL_IMAGES": "-1"}, "OPENAI_PARTIAL_IMAGES"),
        ({"OPENAI_PARTIAL_IMAGES": "two"}, "OPENAI_PARTIAL_IMAGES"),
        ({"IMAGINE_AUTO_REFRESH_SECONDS": "soon"}, "IMAGINE_AUTO_REFRESH_SECONDS"),
        ({"IMAGINE_AUTO_REFRESH_SECONDS": "-1"}, "IMAGINE_AUTO_REFRESH_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(SettingError) as err:
        Config.from_env(env)
    assert name in str(err.value)


def test_secrets_are_not_in_repr():
    config = Config.from_env(
        {
            "OPENAI_API_KEY": "sk-secret-1",
            "SLACK_BOT_TOKEN": "xoxb-secret-2",
            "GOOGLE_SERVICE_ACCOUNT_JSON": '{"private_key": "secret-3"}',
        }
    )
    text = repr(config)
    assert "secret" not in text


def test_dotenv_is_loaded_and_real_env_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("IMAGEN_MODEL=gemini-from-dotenv\nPORT=4000\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "5000")
    monkeypatch.delenv("IMAGEN_MODEL", raising=False)
    config = Config.from_env()
    assert config.google.model == "gemini-from-dotenv"
    assert config.slack.port == 5000
    monkeypatch.delenv("IMAGEN_MODEL", raising=False)  # load_dotenv wrote it into os.environ


def test_voting_defaults_and_custom_emoji():
    assert Config.from_env({}).voting.choices == {
        "a": "A",
        "b": "B",
        "handshake": "tie",
        "x": "both_bad",
    }
    custom = Config.from_env(
        {"VOTE_EMOJI_A": ":point_left:", "VOTE_EMOJI_B": "point_right", "REVEAL_AFTER_VOTES": "5"}
    ).voting
    assert custom.choices["point_left"] == "A" and custom.choices["point_right"] == "B"
    assert custom.reveal_after_votes == 5 and custom.leaderboard_min_votes == 10


@pytest.mark.parametrize("env", [{"VOTE_EMOJI_A": "b"}, {"VOTE_EMOJI_TIE": "+1"}])
def test_voting_emoji_must_be_distinct(env):
    with pytest.raises(SettingError, match="four different emoji"):
        Config.from_env(env)


def test_gateway_token_header_and_app_key():
    default = Config.from_env({}).openai
    assert default.azure_token_header == "authorization" and default.azure_app_key is None
    gateway = Config.from_env(
        {"AZURE_OPENAI_TOKEN_HEADER": "API-Key", "AZURE_OPENAI_APP_KEY": "app-secret-4"}
    )
    assert gateway.openai.azure_token_header == "api-key"
    assert gateway.openai.azure_app_key == "app-secret-4"
    assert "secret" not in repr(gateway)
    with pytest.raises(SettingError, match="AZURE_OPENAI_TOKEN_HEADER must be authorization or"):
        Config.from_env({"AZURE_OPENAI_TOKEN_HEADER": "bearer"})


def test_http_server_and_log_level_settings():
    config = Config.from_env({})
    assert (config.http.processes, config.http.threads, config.log_level) == (1, 32, "INFO")
    config = Config.from_env(
        {"WEB_CONCURRENCY": "3", "IMAGINE_HTTP_THREADS": "8", "LOG_LEVEL": " debug "}
    )
    assert (config.http.processes, config.http.threads, config.log_level) == (3, 8, "DEBUG")


def test_the_database_url_is_not_in_repr():
    config = Config.from_env({"DATABASE_URL": "postgresql://imagine:pw-secret@db/imagine"})
    assert "pw-secret" not in repr(config)


def test_admins_are_validated_slack_user_ids():
    env = {"IMAGINE_ADMINS": " U012AB3CD, W045EF6GH ,,"}
    assert Config.from_env(env).admins == frozenset({"U012AB3CD", "W045EF6GH"})
    assert Config.from_env({}).admins == frozenset()
    with pytest.raises(
        SettingError, match="IMAGINE_ADMINS must be comma-separated Slack user ids.*'alice'"
    ):
        Config.from_env({"IMAGINE_ADMINS": "U012AB3CD,alice"})
