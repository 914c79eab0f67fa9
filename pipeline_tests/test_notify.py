"""Tests for pipeline.lib.notify and the Slack run-failure sensor, against a webhook stand-in."""

import dagster as dg
import pytest

from pipeline.lib.notify import SlackNotifier, scrub
from pipeline.resources import SlackResource
from pipeline.sensors import slack_on_run_failure
from pipeline.standins.base import Request, Response, StandinServer


class SlackStandin(StandinServer):
    name = "slack"

    def handle(self, req: Request) -> Response:
        if req.path != "/services/T000/B000/secretpart":
            return Response(404, "no_service")
        return Response(200, "ok")


@pytest.fixture
def slack():
    with SlackStandin() as srv:
        yield srv


def test_scrub_removes_credentials():
    text = (
        "GET https://firms/api/area/csv/abcd1234/VIIRS_SNPP_NRT/world/1 failed; "
        "Authorization: Bearer eyJhbGciOi.abc.def token=s3cr3t&x=1 x-api-key: KEY123"
    )
    out = scrub(text, ("KEY123",))
    for secret in ("abcd1234", "eyJhbGciOi.abc.def", "s3cr3t", "KEY123"):
        assert secret not in out
    assert "VIIRS_SNPP_NRT" in out


def test_notifier_posts_scrubbed_text(slack):
    url = f"{slack.url}/services/T000/B000/secretpart"
    SlackNotifier(url, secrets=("tok-1",)).post("step failed with tok-1 Bearer abc.def")
    [call] = slack.calls_to("/services/")
    body = call.json()
    assert "tok-1" not in body["text"] and "abc.def" not in body["text"] and "step failed" in body["text"]


def run_failing_asset(message: str, webhook: str | None):
    """Materialise an asset that raises, then evaluate the failure sensor on that run."""

    @dg.asset
    def broken():
        raise RuntimeError(message)

    with dg.instance_for_test() as instance:
        result = dg.materialize([broken], instance=instance, raise_on_error=False)
        assert not result.success
        failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE][0]
        ctx = dg.build_run_status_sensor_context(
            sensor_name="slack_on_run_failure",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            resources={"slack": SlackResource(webhook_url=webhook)},
        ).for_run_failure()
        return result, slack_on_run_failure(ctx)


def test_run_failure_sensor_posts_to_slack(slack):
    webhook = f"{slack.url}/services/T000/B000/secretpart"
    result, _ = run_failing_asset("upstream said no (token=hunter2)", webhook)
    [call] = slack.calls_to("/services/")
    text = call.json()["text"]
    assert result.run_id in text and "upstream said no" in text and "hunter2" not in text
    assert "secretpart" not in text


def test_run_failure_sensor_without_webhook_skips():
    _, out = run_failing_asset("x", None)
    assert isinstance(out, dg.SkipReason)
