"""SlackWebhookHandler against a real local HTTP server."""

from __future__ import annotations

import pytest

from tests.fixtures.tcp_peers import KeepsHandlerErrors

from lab_utils_common.custom_logging import SUCCESS, SlackWebhookHandler


class RecordingSlackHandler(KeepsHandlerErrors, SlackWebhookHandler):
    """Keeps what handleError was given."""


@pytest.fixture
def logger(isolated_logger):
    return isolated_logger("slack-test")


def test_posts_json_to_the_webhook_from_a_url_file(webhook_server, tmp_path, logger):
    url_file = tmp_path / "slack-webhook"
    url_file.write_text(webhook_server.url + "\n")
    handler = SlackWebhookHandler(webhook_file=str(url_file), channel="cw-beam", username="cw_beam")
    handler.setLevel(SUCCESS)
    logger.addHandler(handler)
    logger.info("below the level")
    logger.success("bake-out finished")
    [body] = webhook_server.wait_for(1)
    assert body["channel"] == "cw-beam" and body["username"] == "cw_beam"
    assert "SUCCESS" in body["text"] and body["text"].endswith("bake-out finished")
    path, headers, _ = webhook_server.requests[0]
    assert path == "/services/T000/B000/test-webhook"
    assert headers["Content-Type"] == "application/json"


def test_traceback_is_left_out(webhook_server, logger):
    logger.addHandler(SlackWebhookHandler(webhook_server.url))
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    [body] = webhook_server.wait_for(1)
    assert body["text"].endswith("failed") and "Traceback" not in body["text"]


def test_http_error_goes_to_handle_error(webhook_server, logger):
    webhook_server.status = 500
    handler = RecordingSlackHandler(webhook_server.url)
    logger.addHandler(handler)
    logger.error("refused by the server")
    assert [getattr(e, "code", None) for e in handler.errors] == [500]


def test_unreachable_webhook_goes_to_handle_error(webhook_server, logger):
    url = webhook_server.url
    webhook_server.stop()
    handler = RecordingSlackHandler(url, timeout=2)
    logger.addHandler(handler)
    logger.error("nobody listens")
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], OSError)


def test_file_without_url_is_refused_without_showing_it(tmp_path):
    token_file = tmp_path / "slackapi"
    token_file.write_text("xoxb-legacy-secret-token\n")
    with pytest.raises(ValueError, match="webhook URL") as caught:
        SlackWebhookHandler(webhook_file=str(token_file))
    assert "xoxb-legacy-secret-token" not in str(caught.value)


def test_repr_hides_the_url(webhook_server):
    assert "test-webhook" not in repr(SlackWebhookHandler(webhook_server.url))


def test_text_is_escaped_as_slack_documents(webhook_server, logger):
    logger.addHandler(SlackWebhookHandler(webhook_server.url))
    logger.error("<!channel> see <https://evil.example|the docs> & ```run this``` \u202e")
    [body] = webhook_server.wait_for(1)
    assert body["text"].endswith("&lt;!channel&gt; see &lt;https://evil.example|the docs&gt; "
                                 "&amp; `\u200b``run this`\u200b`` \\u202e")
