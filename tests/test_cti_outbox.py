"""Submissions made while the broker is away are kept on disk: neither the outage nor a
restart of the call forms service loses them, and they are published once, in order."""

from __future__ import annotations

import httpx
from conftest import start_broker
from cti_support import SpecConsumer, add_agent, contact, expected, start_cti


def test_kept_submissions_survive_a_service_restart(tmp_path, unused_port):
    agent = add_agent(tmp_path, "dave", 5)
    broker = start_broker("--port", str(unused_port), "--in-memory")
    cti = start_cti(broker.url, tmp_path)
    try:
        assert broker.stop() == 0
        with httpx.Client(base_url=cti.url, auth=(agent.login, agent.password)) as http:
            for first in ("One", "Two"):
                response = http.post(
                    "/api/forms/contact/results", json={"variables": contact(first, "Kept")}
                )
                assert response.status_code == 202
                assert response.json()["status"] == "queued"
                assert "saved and will be sent" in response.json()["message"]
        assert cti.stop() == 0

        broker = start_broker("--port", str(unused_port), "--in-memory")
        consumer = SpecConsumer(broker.host, broker.port)  # bound before anything is sent
        cti = start_cti(broker.url, tmp_path)
        with httpx.Client(base_url=cti.url, auth=(agent.login, agent.password)) as http:
            sentinel = http.post(
                "/api/forms/contact/results", json={"variables": contact("S", "S")}
            )
            assert sentinel.status_code == 201
        assert consumer.next() == expected(5, **contact("One", "Kept"))
        assert consumer.next() == expected(5, **contact("Two", "Kept"))
        assert consumer.next() == expected(5, **contact("S", "S"))  # each once, in order
        consumer.close()
    finally:
        cti.stop()
        broker.stop()
