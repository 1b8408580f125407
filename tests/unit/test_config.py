from __future__ import annotations

import pytest
from bookgen_worker.config import ConfigError, redact, redis_url_from_env, settings_from_env


def test_redis_url_is_built_from_the_seed_variables() -> None:
    env = {"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_DB": "2", "REDIS_PASSWORD": "s3:cr/t"}
    assert redis_url_from_env(env) == "redis://:s3%3Acr%2Ft@cache:6380/2"


def test_redis_url_wins_and_takes_the_password_when_it_has_none() -> None:
    env = {"REDIS_URL": "redis://broker:6379/1", "REDIS_PASSWORD": "pw", "REDIS_HOST": "ignored"}
    assert redis_url_from_env(env) == "redis://:pw@broker:6379/1"


def test_redact_hides_the_password() -> None:
    assert redact("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert "secret" not in redact("redis://user:secret@h/0")


def test_defaults_are_the_original_figures() -> None:
    settings = settings_from_env({})
    assert (settings.soft_time_limit, settings.time_limit) == (3000, 3600)
    assert settings.result_expires == 86400
    assert settings.prefetch_multiplier == 1
    assert settings.max_tasks_per_child == 1000
    assert settings.visibility_timeout > settings.time_limit
    retry = settings.retry
    assert (retry.max_retries, retry.backoff_base, retry.backoff_factor, retry.backoff_max) == (3, 60, 2, 600)


def test_per_task_type_retry_overrides() -> None:
    settings = settings_from_env({"BOOKGEN_RETRY_OVERRIDES": '{"export": {"max_retries": 5}}'})
    assert settings.retry_for("bookgen.export_to_pdf", "export").max_retries == 5
    assert settings.retry_for("bookgen.generate_chapter", "generation").max_retries == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BOOKGEN_VISIBILITY_TIMEOUT": "60"}, "must exceed the hard time limit"),
        ({"BOOKGEN_MAX_RETRIES": "three"}, "BOOKGEN_MAX_RETRIES must be a whole number"),
        ({"BOOKGEN_RETRY_OVERRIDES": "{"}, "not valid JSON"),
        ({"BOOKGEN_RETRY_OVERRIDES": '{"export": {"tries": 1}}'}, "unknown retry setting"),
        ({"BOOKGEN_PRIORITY_STEPS": "9,0"}, "ascending"),
        ({"REDIS_URL": "http://x"}, "must start with redis://"),
        ({"BOOKGEN_GENERATOR": "openai"}, "needs BOOKGEN_LLM_BASE_URL"),
        ({"BOOKGEN_OFFLINE_SECONDS": "-1"}, "BOOKGEN_OFFLINE_SECONDS must be between 0 and 600"),
    ],
)
def test_bad_configuration_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env)


def test_task_events_and_started_state_are_off_unless_asked_for() -> None:
    from bookgen_worker.app import configure_app
    from celery import Celery

    default = settings_from_env({})
    assert (default.task_events, default.track_started) == (False, False)
    app = Celery("t")
    configure_app(app, default)
    assert not app.conf.worker_send_task_events and not app.conf.task_send_sent_event
    assert not app.conf.task_track_started and app.conf.task_store_errors_even_if_ignored
    on = settings_from_env({"BOOKGEN_TASK_EVENTS": "true", "BOOKGEN_TRACK_STARTED": "1"})
    configure_app(app, on)
    assert app.conf.worker_send_task_events and app.conf.task_send_sent_event and app.conf.task_track_started
