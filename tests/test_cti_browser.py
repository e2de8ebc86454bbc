"""End to end in a real headless Chromium (Debian's, driven by playwright): an agent logs
in, fills the call form and saves it; a consumer written like the spec's example receives
exactly the spec's event; the live page shows it. Invalid input shows the errors and
publishes nothing; with the broker away the agent is told the form is kept, and it is
published once the broker is back. A form pushed on a call pops up on the agent's open
page, pre-filled, while their desktop client gets it as a sheet.

``XIVO_BUS_SCREENSHOTS=docs/screenshots`` makes the tests write the README's screenshots.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from conftest import ChildLines, start_broker
from cti_client import CtiClient, decode_sheet
from cti_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SpecConsumer,
    add_agent,
    contact,
    cti_line,
    expected,
    start_cti,
)

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no chromium at {CHROMIUM} (.ci/setup-chromium.sh installs it)", allow_module_level=True
    )

SCREENSHOTS = os.environ.get("XIVO_BUS_SCREENSHOTS")


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


@pytest.fixture(scope="module")
def chromium():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(chromium):
    context = chromium.new_context(viewport={"width": 1000, "height": 760})
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture(scope="module")
def bus(tmp_path_factory):
    """``xivo-bus serve`` with its call forms on a free loopback port; agent alice (40)."""
    data_dir = tmp_path_factory.mktemp("cti-browser")
    agent = add_agent(data_dir, "alice", 40)
    broker = start_broker("--http", "127.0.0.1:0", "--data-dir", str(data_dir), cti=True)
    lines = ChildLines(broker.proc)
    url = cti_line(lines)
    broker.cti_port = int(lines.wait_for("xivo-bus: CTI clients on").rsplit(":", 1)[1])
    yield broker, url, agent
    assert broker.stop() == 0


def log_in(page, url: str, agent, path: str = "") -> None:
    page.goto(url + path)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Login").fill(agent.login)
    page.get_by_label("Password").fill(agent.password)
    page.get_by_role("button", name="Log in").click()


def fill_contact(page, **values: str) -> None:
    labels = {"firstname": "First name", "lastname": "Last name", "phone": "Phone"}
    labels["comment"] = "Comment"
    for name, value in values.items():
        page.get_by_label(labels[name]).fill(value)


def test_agent_saves_the_form_and_the_spec_consumer_gets_the_event(bus, context):
    broker, url, agent = bus
    page = context.new_page()
    log_in(page, url, agent, "forms/contact")  # back to the form after logging in
    expect(page.get_by_role("heading", name="Contact")).to_be_visible()
    expect(page.get_by_text("Alice Martin (user 40)")).to_be_visible()

    live = context.new_page()
    live.goto(url + "bus")
    expect(live.locator("#status")).to_have_text("Live")

    consumer = SpecConsumer(broker.host, broker.port)
    try:
        values = contact("John", "Doe", "+33 1 23 45 67 89", "Wants a call back on Monday.")
        fill_contact(page, **values)
        screenshot(page, "call-form.png")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#outcome")).to_contain_text("Sent to the bus.")
        expect(page.locator(".receipt")).to_contain_text("Wants a call back on Monday.")
        assert consumer.next() == expected(40, **values)
    finally:
        consumer.close()

    event = live.locator(".event").first
    expect(event.locator(".name")).to_have_text("call_form_result")
    expect(event).to_contain_text('"user_id": 40')
    expect(event).to_contain_text('"comment": "Wants a call back on Monday."')
    screenshot(live, "live-bus.png")

    live.get_by_label("Event names").fill("some_other_event")
    live.get_by_role("button", name="Filter").click()
    expect(live.locator("#status")).to_have_text("Live")
    expect(live.locator(".event")).to_have_count(0)
    live.get_by_label("Event names").fill("call_form_result")
    live.get_by_role("button", name="Filter").click()
    expect(live.locator(".event").first).to_contain_text('"firstname": "John"')


def test_invalid_input_shows_the_errors_and_publishes_nothing(bus, context):
    broker, url, agent = bus
    page = context.new_page()
    log_in(page, url, agent)
    page.get_by_role("link", name="Contact").click()
    consumer = SpecConsumer(broker.host, broker.port)
    try:
        fill_contact(page, firstname="John", phone="call me maybe")
        page.get_by_role("button", name="Save").click()
        summary = page.get_by_role("alert")
        expect(summary).to_contain_text("Please correct these fields")
        expect(summary).to_contain_text("Last name: This field is required.")
        expect(summary).to_contain_text("Phone: Not a valid phone.")
        expect(page.get_by_label("Last name")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("First name")).to_have_value("John")  # kept
        expect(page.get_by_label("Phone")).to_have_value("call me maybe")
        screenshot(page, "call-form-errors.png")

        # A valid form saved after the invalid one arrives first: nothing came before it.
        fill_contact(page, lastname="Doe", phone="0123456789")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#outcome")).to_contain_text("Sent to the bus.")
        assert consumer.next() == expected(40, **contact("John", "Doe", "0123456789"))
    finally:
        consumer.close()


def test_wrong_password_is_refused(bus, context):
    _, url, agent = bus
    page = context.new_page()
    log_in(page, url, replace(agent, password="wrong"))
    expect(page.get_by_role("alert")).to_have_text("Unknown login or wrong password.")
    page.goto(url + "bus")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_form_saved_while_the_bus_is_down_is_sent_when_it_is_back(
    tmp_path, context, unused_port, name
):
    broker_dir, cti_dir = tmp_path / "broker", tmp_path / "cti"
    agent = add_agent(cti_dir, "carol", 12)
    broker = start_broker("--port", str(unused_port), "--data-dir", str(broker_dir))
    # A durable queue, so that the event published after the restart waits for us.
    SpecConsumer(broker.host, broker.port, queue=name).close()
    cti = start_cti(broker.url, cti_dir)
    try:
        page = context.new_page()
        log_in(page, cti.url, agent, "forms/contact")
        assert broker.stop() == 0
        fill_contact(page, firstname="Kept", lastname="Form")
        page.get_by_role("button", name="Save").click()
        outcome = page.locator("#outcome")
        expect(outcome).to_contain_text("The bus is unreachable right now.")
        expect(outcome).to_contain_text(
            "Your form is saved and will be sent as soon as the bus is back"
        )
        screenshot(page, "call-form-kept.png")

        broker = start_broker("--port", str(unused_port), "--data-dir", str(broker_dir))
        consumer = SpecConsumer(broker.host, broker.port, queue=name)
        try:
            assert consumer.next() == expected(12, **contact("Kept", "Form"))
        finally:
            consumer.close()
    finally:
        assert cti.stop() == 0
        broker.stop()


def test_every_field_type_renders_and_submits(broker, tmp_path, context):
    form = {
        "id": "callback",
        "title": "Call back",
        "fields": [
            {
                "name": "reason",
                "label": "Reason",
                "type": "select",
                "required": True,
                "options": [{"value": "sale", "label": "A sale"}, "support"],
            },
            {"name": "urgent", "label": "Urgent", "type": "checkbox"},
            {"name": "consent", "label": "Customer agrees", "type": "checkbox"},
            {"name": "day", "label": "Day", "type": "date", "required": True},
            {"name": "minutes", "label": "Minutes", "type": "number", "min": 1},
            {"name": "notes", "label": "Notes", "type": "textarea"},
        ],
    }
    (tmp_path / "forms.json").write_text(json.dumps({"forms": [form]}))
    agent = add_agent(tmp_path, "erin", 3)
    cti = start_cti(broker.url, tmp_path)
    consumer = SpecConsumer(broker.host, broker.port)
    try:
        page = context.new_page()
        log_in(page, cti.url, agent, "forms/callback")
        page.get_by_label("Minutes").fill("0")
        page.get_by_role("button", name="Save").click()
        summary = page.get_by_role("alert")
        expect(summary).to_contain_text("Reason: This field is required.")
        expect(summary).to_contain_text("Day: This field is required.")
        expect(summary).to_contain_text("Minutes: At least 1.")

        page.get_by_label("Reason").select_option(label="A sale")
        page.get_by_label("Urgent").check()
        page.get_by_label("Day").fill("2024-05-17")
        page.get_by_label("Minutes").fill("15")
        page.get_by_label("Notes").fill("two\nlines")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#outcome")).to_contain_text("Sent to the bus.")
        assert consumer.next() == expected(
            3,
            reason="sale",
            urgent="true",
            consent="false",
            day="2024-05-17",
            minutes="15",
            notes="two\nlines",
        )
    finally:
        consumer.close()
        assert cti.stop() == 0


def test_a_form_pushed_on_a_call_pops_up_pre_filled_and_saving_it_publishes(bus, context):
    broker, url, agent = bus
    page = context.new_page()
    log_in(page, url, agent, "forms")
    expect(page.get_by_role("heading", name="Call forms")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-sheets", "live")

    # The agent's desktop client is logged in too (protocol 2.0: the password is checked
    # against its hash), in a thread of its own.
    ready = threading.Event()

    async def desktop_client():
        client = await CtiClient.connect("127.0.0.1", broker.cti_port)
        try:
            capas = await client.login(agent.login, agent.password, "2.0")
            assert capas["userid"] == "40", capas
            ready.set()
            return decode_sheet(await client.expect(timeout=30, **{"class": "sheet"}))
        finally:
            await client.close()

    consumer = SpecConsumer(broker.host, broker.port)
    with ThreadPoolExecutor(1) as pool:
        desktop = pool.submit(asyncio.run, desktop_client())
        assert ready.wait(30) or desktop.result()
        request = {
            "user_id": 40,
            "channel": "SIP/abc-00000042",
            "variables": {"firstname": "John", "phone": "+33 1 23 45 67 89"},
        }
        push = httpx.post(url + "api/sheets", json=request, auth=(agent.login, agent.password))
        assert push.status_code == 201 and push.json()["delivered"] == {"cti": 1, "web": 1}
        sheet = desktop.result(timeout=30)
    assert sheet.channel == "SIP/abc-00000042"
    assert sheet.value("XIVOFORM_firstname") == "John"
    try:
        popup = page.get_by_role("dialog")
        expect(popup.get_by_role("heading", name="Contact")).to_be_visible()
        expect(popup).to_contain_text("SIP/abc-00000042")
        expect(popup.get_by_label("First name")).to_have_value("John")
        expect(popup.get_by_label("Phone")).to_have_value("+33 1 23 45 67 89")
        popup.get_by_label("Last name").fill("Doe")
        screenshot(page, "call-form-popup.png")
        popup.get_by_role("button", name="Save").click()
        expect(page.locator("#outcome")).to_contain_text("Sent to the bus.")
        assert consumer.next() == expected(40, **contact("John", "Doe", "+33 1 23 45 67 89"))
    finally:
        consumer.close()
