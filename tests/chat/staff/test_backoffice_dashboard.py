"""The dashboard's numbers, checked one by one against a hand-built data set."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.staff import dashboard
from chat.staff.dashboard import DateRangeForm, Period, percentile
from orders.models import Customer
from tests.chat.backoffice_data import DataSet, build

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(alice: Customer, bob: Customer) -> DataSet:
    return build(alice, bob)


@pytest.fixture
def week() -> Period:
    today = timezone.localdate()
    return Period(start=today - timedelta(days=6), end=today)


def staff_in(group: str, username: str) -> Client:
    user = User.objects.create_user(username=username, password="correct horse 9", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def test_conversations_per_day_counts_each_day_of_the_period(data: DataSet, week: Period) -> None:
    per_day = dict(dashboard.conversations_per_day(week))

    today = timezone.localdate()
    assert len(per_day) == 7
    # a and d today, b two days ago; c (forty days ago) is outside.
    assert per_day[today] == 2
    assert per_day[today - timedelta(days=2)] == 1
    assert sum(per_day.values()) == 3


def test_it_counts_every_number_of_the_period(data: DataSet, week: Period) -> None:
    result = dashboard.dashboard(week)

    assert result.conversations == 3
    # b is waiting for an agent, d was escalated before it was resolved.
    assert (result.escalated, result.escalated_share) == (2, pytest.approx(2 / 3))
    # Only a's cancellation came through the assistant (not the staff one, not the one outside
    # a conversation).
    assert result.cancellations == 1
    # a: one success; b: one error, one success; c's error is outside the period.
    assert (result.tool_errors, result.tool_results) == (1, 3)
    assert result.tool_error_rate == pytest.approx(1 / 3)
    # a: 1000+1200 in, 100+50 out; b: 500+600 in, 20+30 out, 2000 cache read, 1000 cache write.
    usage = result.usage
    assert (usage.conversations, usage.input_tokens, usage.output_tokens) == (3, 3300, 200)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (2000, 1000)
    # (3300 * 3.00 + 200 * 15.00 + 2000 * 0.30 + 1000 * 3.75) / 1e6 = 17250 / 1e6
    assert usage.cost == Decimal("0.01725")
    assert usage.per_conversation(usage.cost) == Decimal("0.00575")
    # Successful calls in the period: 400, 800, 1200, 2000 ms (b's failed call is left out).
    assert result.latency_calls == 4
    assert result.latency_p50 == pytest.approx(1000.0)  # halfway between 800 and 1200
    assert result.latency_p95 == pytest.approx(1880.0)  # 1200 + 0.85 * (2000 - 1200)
    # a's thumbs up and b's thumbs down; c's is outside.
    assert (result.thumbs_up, result.ratings, result.thumbs_up_share) == (1, 2, 0.5)


def test_cost_per_day_follows_the_configured_prices(
    data: DataSet, week: Period, settings: object
) -> None:
    settings.BEDROCK_PRICE_INPUT_PER_MTOK = Decimal("1.00")  # type: ignore[attr-defined]
    settings.BEDROCK_PRICE_OUTPUT_PER_MTOK = Decimal("0")  # type: ignore[attr-defined]
    settings.BEDROCK_PRICE_CACHE_READ_PER_MTOK = Decimal("0")  # type: ignore[attr-defined]
    settings.BEDROCK_PRICE_CACHE_WRITE_PER_MTOK = Decimal("0")  # type: ignore[attr-defined]

    per_day = dict(dashboard.cost_per_day(week))

    today = timezone.localdate()
    assert per_day[today] == Decimal("0.0022")  # a: 2200 input tokens at $1 per million
    assert per_day[today - timedelta(days=2)] == Decimal("0.0011")  # b: 1100
    assert sum(per_day.values()) == Decimal("0.0033")


def test_an_empty_period_has_no_shares_instead_of_dividing_by_zero(db: None) -> None:
    result = dashboard.dashboard(Period.last_days(30))

    assert result.conversations == 0
    assert result.escalated_share is None
    assert result.tool_error_rate is None
    assert result.thumbs_up_share is None
    assert (result.latency_p50, result.latency_p95) == (None, None)
    assert result.usage.per_conversation(result.usage.cost) is None


def test_percentile_interpolates_like_percentile_cont() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10, 20, 30, 40, 50], 0.95) == pytest.approx(48.0)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"start": "2026-05-10", "end": "2026-05-01"}, "must be on or before the end date"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "at most 366 days"),
        ({"start": "yesterday"}, "Enter a valid date."),
    ],
)
def test_the_period_form_explains_what_is_wrong(params: dict[str, str], error: str) -> None:
    form = DateRangeForm(params)

    assert not form.is_valid()
    assert error in str(form.errors)


def test_the_period_defaults_to_the_last_thirty_days() -> None:
    form = DateRangeForm({})

    assert form.is_valid()
    today = timezone.localdate()
    assert (form.cleaned_data["start"], form.cleaned_data["end"]) == (
        today - timedelta(days=29),
        today,
    )


def test_a_lead_sees_the_dashboard_with_charts_and_tables(data: DataSet) -> None:
    client = staff_in("Support lead", "lena")

    response = client.get(reverse("support_dashboard"), {"start": "", "end": ""})
    index = client.get(reverse("admin:index"))

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<svg class="chart"') == 4
    assert '<title id="per-day-title">Conversations per day</title>' in page
    assert "67% (2 of 3)" in page  # escalated
    assert "33% (1 of 3)" in page  # tool error rate
    assert "1,000 ms / 1,880 ms (4 calls)" in page
    assert "<table>" in page
    assert "<script" not in page.split('id="content-main"')[1]
    assert reverse("support_dashboard") in index.content.decode()


def test_a_bad_period_shows_the_error_and_no_numbers(data: DataSet) -> None:
    client = staff_in("Support lead", "lena")

    response = client.get(
        reverse("support_dashboard"), {"start": "2026-05-10", "end": "2026-05-01"}
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "The start date must be on or before the end date." in page
    assert '<svg class="chart"' not in page


def test_an_agent_gets_403_on_the_dashboard_and_no_link(data: DataSet) -> None:
    client = staff_in("Support agent", "arun")

    response = client.get(reverse("support_dashboard"))
    index = client.get(reverse("admin:index"))

    assert response.status_code == 403
    assert reverse("support_dashboard") not in index.content.decode()


def test_customers_are_sent_to_the_admin_sign_in(alice: Customer) -> None:
    client = Client()
    assert alice.user is not None
    client.force_login(alice.user)

    response = client.get(reverse("support_dashboard"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
