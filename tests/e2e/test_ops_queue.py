"""The operator queue endpoint drives what a phone caller is offered."""

import httpx


def test_setting_the_queue_high_turns_the_offer_on_and_bad_input_is_refused(live_host: str) -> None:
    with httpx.Client(base_url=live_host, timeout=30) as client:
        view = client.post("/api/ops/queue", json={"set": {"waiting": 0}, "clear_overrides": True}).json()
        assert view["switch_offered"] is False and view["queue"]["waiting"] == 0

        view = client.post("/api/ops/queue", json={"set": {"waiting": 60, "estimated_wait_seconds": 300}}).json()
        assert view["switch_offered"] is True
        assert any("60 customers waiting for a person" in r for r in view["reasons"])
        assert view["queue"]["overridden"] is True and view["figures"].startswith("overridden")

        view = client.post("/api/ops/queue", json={"adjust": {"waiting": -20}}).json()
        assert view["queue"]["waiting"] == 40 and view["switch_offered"] is True  # the 300 s wait still counts
        assert client.get("/api/ops/queue").json() == view

        for bad in ({"set": {"waiting": -1}}, {"set": {"waiting": "lots"}}, {"bump": 1}, {"adjust": {"known": 1}}):
            response = client.post("/api/ops/queue", json=bad)
            assert response.status_code == 400, bad
            assert response.json()["error"]
        assert client.get("/api/ops/queue").json() == view  # nothing changed

        client.post("/api/ops/queue", json={"set": {"waiting": 0}, "clear_overrides": True})
