"""Dead letters over HTTP: list a page at a time, queue for replay, purge."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from test_auth import add_udp

from xavyo_siem.store.dead_letters import add_dead_letters, replay_requested

from conftest import Api


def add_letters(api: Api, destination_id: object, count: int) -> None:
    with api.engine.begin() as conn:
        add_dead_letters(
            conn, tenant_id=api.tenant, destination_id=destination_id,  # type: ignore[arg-type]
            entries=[(uuid4(), f"refused {i}") for i in range(count)], now=datetime.now(UTC),
        )  # fmt: skip


async def test_dead_letters_are_listed_a_page_at_a_time_oldest_first(api: Api) -> None:
    """`after_id` continues where `next_after_id` left off, until every letter was seen once."""
    destination = add_udp(api.engine, api.tenant)
    add_letters(api, destination.id, 25)
    base = api.path(f"/destinations/{destination.id}/dead-letters")
    seen: list[int] = []
    after = 0
    while True:
        page = (
            await api.client.get(
                base, headers=api.as_("viewer"), params={"limit": 10, "after_id": after}
            )
        ).json()
        seen += [item["id"] for item in page["items"]]
        if page["next_after_id"] is None:
            break
        after = page["next_after_id"]
    assert len(seen) == 25
    assert seen == sorted(seen)
    assert page["items"][-1]["reason"] == "refused 24"


async def test_replay_queues_the_chosen_letters_and_purge_deletes_only_them(api: Api) -> None:
    """Replay marks the listed (or all) letters of this destination; purge removes the listed
    ones; another destination's letters are untouched."""
    mine, neighbour = add_udp(api.engine, api.tenant), add_udp(api.engine, api.tenant)
    add_letters(api, mine.id, 5)
    add_letters(api, neighbour.id, 3)
    base = api.path(f"/destinations/{mine.id}/dead-letters")
    items = (await api.client.get(base, headers=api.as_("admin"))).json()["items"]
    ids = [item["id"] for item in items]
    neighbours = (
        await api.client.get(
            api.path(f"/destinations/{neighbour.id}/dead-letters"), headers=api.as_("admin")
        )
    ).json()["items"]
    queued = await api.client.post(
        f"{base}/replay", headers=api.as_("admin"), json={"ids": [*ids[:2], neighbours[0]["id"]]}
    )
    assert queued.json() == {"queued": 2}
    with api.engine.connect() as conn:
        marked = replay_requested(conn, tenant_id=api.tenant, destination_id=mine.id, limit=10)
    assert [letter.id for letter in marked] == ids[:2]
    everything = await api.client.post(f"{base}/replay", headers=api.as_("admin"))
    assert everything.json() == {"queued": 5}
    purged = await api.client.post(f"{base}/purge", headers=api.as_("admin"), json={"ids": ids[3:]})
    assert purged.json() == {"purged": 2}
    left = (await api.client.get(base, headers=api.as_("admin"))).json()["items"]
    assert [item["id"] for item in left] == ids[:3]
    rest = await api.client.get(
        api.path(f"/destinations/{neighbour.id}/dead-letters"), headers=api.as_("admin")
    )
    assert len(rest.json()["items"]) == 3
    bad = await api.client.post(f"{base}/purge", headers=api.as_("admin"), json={"ids": [0]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "ids", 0]
