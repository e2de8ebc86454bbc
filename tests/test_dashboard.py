"""The management dashboard (``/`` of ``serve --management``) in a real headless Chromium,
driven by playwright, against xivo-bus with real AMQP traffic from pika: logging in (and
being refused), the totals and the charts updating live, the queues (filter, sort by mouse
and keyboard, open one: bindings, consumers, get messages, purge, delete), publishing from
an exchange, closing a connection, a non-administrator's view.

``XIVO_BUS_SCREENSHOTS=docs/screenshots`` makes the tests write the README's screenshots
(the overview then waits for half a minute of samples, so that the charts have a history).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pika
import pytest
from conftest import BrokerProcess, start_management_broker
from cti_support import CHROMIUM, CHROMIUM_ARGS
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no chromium at {CHROMIUM} (.ci/setup-chromium.sh installs it)", allow_module_level=True
    )

SCREENSHOTS = os.environ.get("XIVO_BUS_SCREENSHOTS")
LAPTOP = {"width": 1366, "height": 768}


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name))


@dataclass
class Dashboard:
    broker: BrokerProcess
    url: str  # of the page, ends with "/"

    def api(self, path: str):
        response = httpx.get(f"{self.url}api{path}", auth=("guest", "guest"), timeout=10)
        response.raise_for_status()
        return response.json()

    def amqp(self, name: str) -> pika.BlockingConnection:
        """A pika connection named ``name`` (its ``connection_name`` client property)."""
        params = pika.ConnectionParameters(
            self.broker.host, self.broker.port, client_properties={"connection_name": name}
        )
        return pika.BlockingConnection(params)

    def ctl(self, *args: str, stdin: str | None = None) -> None:
        socket = os.path.join(self.broker.data_dir, "ctl.sock")
        done = subprocess.run(
            [sys.executable, "-m", "xivo_bus", "ctl", "--socket", socket, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


class Traffic(threading.Thread):
    """Steady traffic on a connection of its own until ``stop()``: messages published to the
    fanout exchange ``dash-events`` at a rate that swings between 4 and 36 a second, each
    delivered to ``dash-audit`` and ``dash-mail`` (consumed with acks) and ``dash-log``
    (consumed without), so the three rates differ; and 3 of the 10 messages of ``dash-held``
    held unacknowledged (the ready and unacked totals)."""

    QUEUES = ("dash-audit", "dash-mail", "dash-log")

    def __init__(self, dashboard: Dashboard):
        super().__init__(daemon=True)
        self.dashboard = dashboard
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = self.dashboard.amqp("dash-traffic")
            work = connection.channel()
            work.exchange_declare("dash-events", "fanout")
            for queue in self.QUEUES:
                work.queue_declare(queue)
                work.queue_bind(queue, "dash-events")
            acks = lambda ch, method, props, body: ch.basic_ack(method.delivery_tag)  # noqa: E731
            work.basic_consume("dash-audit", acks)
            work.basic_consume("dash-mail", acks)
            work.basic_consume("dash-log", lambda *_: None, auto_ack=True)
            held = connection.channel()
            held.queue_declare("dash-held")
            for n in range(10):
                held.basic_publish("", "dash-held", f"held {n}".encode())
            held.basic_qos(prefetch_count=3)
            held.basic_consume("dash-held", lambda *_: None)  # never acks
            started = due = time.monotonic()
            sent = 0.0
            while not self.stopping.is_set():
                # 10 steps a second; the rate follows a 40 s wave.
                sent += (20 + 16 * math.sin((due - started) * math.pi / 20)) / 10
                while sent >= 1:
                    work.basic_publish("dash-events", "", f"event at {due:.1f}".encode())
                    sent -= 1
                due += 0.1
                while (left := due - time.monotonic()) > 0:
                    connection.process_data_events(time_limit=left)
            connection.close()
        except BaseException as error:  # reported by stop()
            self.error = error

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)
        assert self.error is None, self.error


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """``xivo-bus serve --management 127.0.0.1:0`` with its own data directory."""
    data_dir = tmp_path_factory.mktemp("dashboard")
    broker, base = start_management_broker("--no-prometheus", "--data-dir", str(data_dir))
    yield Dashboard(broker, f"{base}/")
    assert broker.stop() == 0


@pytest.fixture(scope="module")
def traffic(dashboard):
    thread = Traffic(dashboard)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module", autouse=True)
def patient_expect():
    """The page updates every 2 s: give each expectation a few rounds of it."""
    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=5_000)  # playwright's default


@pytest.fixture(scope="module")
def chromium():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport=LAPTOP)
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: problems.append(f"native dialog: {dialog.message}"))
    yield page
    context.close()
    assert not problems


def log_in(page, dashboard: Dashboard, user: str = "guest", password: str = "guest") -> None:
    page.goto(dashboard.url)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def tile(page, total: str):
    return page.locator(f'[data-total="{total}"] .tile-value')


def number_at_least(page, selector: str, minimum: float) -> None:
    """Waits until the number shown by ``selector`` is at least ``minimum``."""
    page.wait_for_function(
        """([selector, minimum]) => {
            const el = document.querySelector(selector);
            return el && parseFloat(el.textContent.replace(/,/g, "")) >= minimum;
        }""",
        arg=[selector, minimum],
    )


def open_view(page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)


def test_wrong_password_shows_the_error_then_the_right_one_logs_in(dashboard, page):
    log_in(page, dashboard, password="wrong")
    alert = page.locator("#login-error")
    expect(alert).to_contain_text("Login refused")
    expect(alert).to_contain_text("HTTP 401")
    expect(page.get_by_label("Password")).to_be_focused()

    page.get_by_label("Password").fill("guest")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#whoami")).to_have_text("guest (administrator)")
    expect(page.locator("#status")).to_have_text("Live")
    # Kept for the tab's life only: a reload stays logged in, logging out forgets.
    page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_overview_shows_the_totals_and_live_charts(dashboard, traffic, page):
    log_in(page, dashboard)
    expect(tile(page, "connections")).to_have_text("1")
    expect(tile(page, "channels")).to_have_text("2")
    expect(tile(page, "queues")).to_have_text("4")
    expect(tile(page, "consumers")).to_have_text("4")
    exchanges = dashboard.api("/overview")["object_totals"]["exchanges"]
    expect(tile(page, "exchanges")).to_have_text(str(exchanges))
    number_at_least(page, '[data-total="messages_ready"] .tile-value', 7)
    number_at_least(page, '[data-total="messages_unacknowledged"] .tile-value', 3)

    # The charts draw the samples polled every 2 s, and keep drawing new ones.
    expect(page.locator("#rates-chart-plot canvas").first).to_be_visible()
    expect(page.locator("#queued-chart-plot canvas").first).to_be_visible()
    for series in ("publish", "deliver", "ack"):
        number_at_least(page, f'#rates-chart [data-series="{series}"] .value', 1)
    number_at_least(page, '#queued-chart [data-series="ready"] .value', 7)
    number_at_least(page, '#queued-chart [data-series="unacked"] .value', 3)
    samples = int(page.locator("#rates-chart-plot").get_attribute("data-samples"))
    enough = max(samples + 2, 16 if SCREENSHOTS else 3)
    page.wait_for_function(
        "n => Number(document.querySelector('#rates-chart-plot').dataset.samples) >= n",
        arg=enough,
        timeout=60_000,
    )
    busiest = page.get_by_role("region", name="Busiest queues")
    expect(busiest.get_by_role("link", name="dash-held")).to_be_visible()
    screenshot(page, "dashboard-overview.png")

    # A hidden tab stops polling; it resumes when shown again.
    page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    expect(page.locator("#status")).to_have_text("Paused")
    page.evaluate(
        """() => {
            delete document.hidden;
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    expect(page.locator("#status")).to_have_text("Live")


def test_queues_filter_sort_open_get_purge_delete(dashboard, page):
    connection = dashboard.amqp("dash-queues")
    try:
        channel = connection.channel()
        channel.queue_declare("shop-alpha", durable=True, arguments={"x-max-length": 1000})
        channel.queue_declare("shop-beta")
        channel.queue_declare("other-gamma")
        for name, count in (("shop-alpha", 5), ("shop-beta", 2)):
            for n in range(count):
                channel.basic_publish("", name, f"{name} {n}".encode())
        channel.queue_bind("shop-alpha", "amq.topic", "orders.#")
        watcher = connection.channel()
        watcher.basic_qos(prefetch_count=1)
        watcher.basic_consume("shop-alpha", lambda *_: None, consumer_tag="shop-watcher")

        log_in(page, dashboard)
        open_view(page, "Queues")
        rows = page.locator("#queues tbody tr")
        expect(page.get_by_role("link", name="shop-beta")).to_be_visible()
        screenshot(page, "dashboard-queues.png")
        page.keyboard.press("/")  # to the filter box
        expect(page.get_by_label("Filter queues")).to_be_focused()
        page.keyboard.type("shop-")
        expect(rows).to_have_count(2)
        expect(page.get_by_role("link", name="other-gamma")).to_have_count(0)
        expect(page.locator(".count")).to_have_text(re.compile(r"^2 of \d+ queues$"))

        total = page.get_by_role("button", name="Total", exact=True)
        total.click()
        header = page.locator("#queues th").filter(has=total)
        expect(header).to_have_attribute("aria-sort", "descending")
        expect(rows.first).to_contain_text("shop-alpha")
        expect(rows.first.locator("td").nth(7)).to_have_text("5")  # Total
        total.focus()
        page.keyboard.press("Enter")
        expect(header).to_have_attribute("aria-sort", "ascending")
        expect(rows.first).to_contain_text("shop-beta")

        # A queue declared now shows up live; names from clients are text, never markup.
        evil = "shop-<img src=x onerror=window.__xss=1>"
        channel.queue_declare(evil)
        expect(rows).to_have_count(3)
        expect(page.get_by_role("link", name=evil, exact=True)).to_be_visible()
        expect(rows.first).to_contain_text(evil)  # 0 messages
        assert page.evaluate("window.__xss") is None

        # Open one from the keyboard.
        page.get_by_role("link", name="shop-alpha").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text("Queue shop-alpha")
        expect(page.locator(".facts .total")).to_have_text("5")
        expect(page.get_by_title("x-max-length: 1000")).to_have_text("max-length")
        consumers = page.locator("#queue-consumers tbody")
        expect(consumers).to_contain_text("shop-watcher")
        bindings = page.locator("#queue-bindings tbody")
        expect(bindings.get_by_role("link", name="(AMQP default)")).to_be_visible()
        expect(bindings.locator("tr", has_text="amq.topic")).to_contain_text("orders.#")

        page.get_by_label("Messages", exact=True).fill("2")
        page.get_by_role("button", name="Get messages").click()
        expect(page.get_by_text("Got 2 messages.")).to_be_visible()
        expect(page.locator(".message")).to_have_count(2)
        expect(page.locator(".message .payload").first).to_have_text(re.compile(r"^shop-alpha \d$"))
        screenshot(page, "dashboard-queue.png")

        # Purge: the four ready messages go, the one held by shop-watcher stays.
        page.get_by_role("button", name="Purge messages").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("All the ready messages of shop-alpha")
        dialog.get_by_role("button", name="Purge messages").click()
        expect(page.get_by_role("status").filter(has_text="was purged")).to_be_visible()
        expect(page.locator(".facts .total")).to_have_text("1")
        assert channel.queue_declare("shop-alpha", passive=True).method.message_count == 0

        # Delete: cancelling keeps the queue; confirming deletes it.
        page.get_by_role("button", name="Delete queue").click()
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
        page.get_by_role("button", name="Delete queue").click()
        dialog.get_by_role("button", name="Delete queue").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Queues")
        expect(page.get_by_role("status").filter(has_text="shop-alpha was deleted")).to_be_visible()
        expect(rows).to_have_count(2)
        probe = connection.channel()
        with pytest.raises(ChannelClosedByBroker) as refused:
            probe.queue_declare("shop-alpha", passive=True)
        assert refused.value.reply_code == 404
    finally:
        if connection.is_open:
            connection.close()


def test_publish_from_an_exchange(dashboard, page):
    connection = dashboard.amqp("dash-publish")
    try:
        channel = connection.channel()
        channel.queue_declare("dash-published")
        channel.queue_bind("dash-published", "amq.direct", "dash-key")

        log_in(page, dashboard)
        open_view(page, "Exchanges")
        expect(page.get_by_role("link", name="(AMQP default)").first).to_be_visible()
        page.get_by_label("Filter exchanges").fill("amq.direct")
        expect(page.locator("#exchanges tbody tr")).to_have_count(1)
        page.get_by_role("link", name="amq.direct").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Exchange amq.direct")
        expect(page.locator("#exchange-bindings tbody")).to_contain_text("dash-published")

        page.get_by_label("Routing key").fill("dash-key")
        page.get_by_label("Delivery mode").select_option("2")
        page.get_by_label("Payload").fill('{"hello": "from the dashboard"}')
        page.get_by_label("Content type").fill("application/json")
        page.get_by_role("button", name="Publish message").click()
        outcome = page.locator(".publish + .flash")
        expect(outcome).to_have_text("Message published and routed to a queue.")
        screenshot(page, "dashboard-publish.png")
        method, properties, body = channel.basic_get("dash-published", auto_ack=True)
        assert json.loads(body) == {"hello": "from the dashboard"}
        assert properties.delivery_mode == 2
        assert properties.content_type == "application/json"

        page.get_by_label("Routing key").fill("nowhere")
        page.get_by_role("button", name="Publish message").click()
        expect(outcome).to_have_text("Message published, but not routed: no queue matched it.")

        # The default exchange routes by queue name; its URL is amq.default.
        page.goto(f"{dashboard.url}#/exchanges/%2F/amq.default")
        expect(page.get_by_role("heading", level=1)).to_have_text("Exchange (AMQP default)")
        page.get_by_label("Routing key").fill("dash-published")
        page.get_by_label("Payload").fill("plain text")
        page.get_by_role("button", name="Publish message").click()
        expect(outcome).to_have_text("Message published and routed to a queue.")
        assert channel.basic_get("dash-published", auto_ack=True)[2] == b"plain text"

        # The API's errors are shown as they come: here, no such exchange.
        page.goto(f"{dashboard.url}#/exchanges/%2F/dash-missing")
        expect(page.get_by_text("This exchange does not exist (any more).")).to_be_visible()
        page.get_by_role("button", name="Publish message").click()
        error = page.get_by_role("alert")
        expect(error).to_contain_text("Could not publish:")
        # RabbitMQ's answer, as is: 400 bad_request, "404 NOT_FOUND - no exchange ..."
        expect(error).to_contain_text("no exchange 'dash-missing' in vhost '/' (HTTP 400")
    finally:
        connection.close()


def test_close_a_connection_from_the_list(dashboard, page):
    victim = dashboard.amqp("dash-victim")
    victim.channel()
    log_in(page, dashboard)
    open_view(page, "Connections")
    page.get_by_label("Filter connections").fill("dash-victim")  # its connection_name
    row = page.locator("#connections tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".sub")).to_have_text("dash-victim")
    name = row.locator(".name").text_content()  # "127.0.0.1:PORT -> 127.0.0.1:PORT"
    assert " -> " in name

    open_view(page, "Channels")
    page.get_by_label("Filter channels").fill(name)
    expect(page.locator("#channels tbody tr")).to_have_count(1)
    expect(page.locator("#channels tbody")).to_contain_text(f"{name} (1)")

    open_view(page, "Connections")
    expect(page.get_by_label("Filter connections")).to_have_value("dash-victim")  # kept
    expect(row).to_have_count(1)
    row.get_by_role("button", name=f"Close connection {name}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reason").fill("Closed by the dashboard test")
    dialog.get_by_role("button", name="Close connection").click()
    expect(page.get_by_role("status").filter(has_text="closed")).to_contain_text(name)

    deadline = time.monotonic() + 20
    with pytest.raises(ConnectionClosedByBroker) as closed:
        while time.monotonic() < deadline:
            victim.process_data_events(time_limit=0.1)
    assert closed.value.reply_code == 320
    assert "Closed by the dashboard test" in closed.value.reply_text
    expect(page.locator("#connections tbody")).not_to_contain_text(name)


def test_a_non_administrator_sees_no_admin_and_is_sent_back_to_log_in(dashboard, page):
    dashboard.ctl("add_user", "watcher", "w4tch3r")
    dashboard.ctl("set_user_tags", "watcher", "management")
    dashboard.ctl("set_permissions", "-p", "/", "watcher", ".*", ".*", ".*")

    log_in(page, dashboard)  # an administrator first: users, vhosts and permissions
    open_view(page, "Admin")
    expect(page.locator("#users tbody")).to_contain_text("watcher")
    expect(page.locator("#permissions tbody tr", has_text="watcher")).to_contain_text("/")
    page.get_by_role("button", name="Log out").click()

    log_in(page, dashboard, "watcher", "w4tch3r")
    expect(page.locator("#whoami")).to_have_text("watcher (management)")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Queues")).to_be_visible()
    expect(nav.get_by_role("link", name="Admin")).to_be_hidden()

    # A refusal while logged in (the password changed) returns to the login form.
    dashboard.ctl("change_password", "watcher", stdin="changed\n")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("Your login was refused")
