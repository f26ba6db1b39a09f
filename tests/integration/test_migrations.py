"""Migrations over stores that hold rows written by an older version (both backends)."""

from __future__ import annotations

import uuid

import orjson
from alembic import command
from sqlalchemy import text

from xavyo_siem.delivery import validate_destination
from xavyo_siem.delivery.splunk_hec import HecConfig
from xavyo_siem.store import make_engine, upgrade
from xavyo_siem.store.engine import _alembic_config, writing


def test_destinations_stored_before_new_delivery_defaults_keep_their_behaviour(
    store_url: str,
) -> None:
    """Destinations stored at revision 0005 keep behaving as before after the upgrade: an HEC
    destination without source or sourcetype still sends neither (the options become ""),
    its own values stay, and a UDP destination still sends long records cut."""
    engine = make_engine(store_url)
    config = _alembic_config()
    with writing(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    plain, own, udp = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    with engine.begin() as conn:
        for ident, name, kind, endpoint, options in (
            (plain, "plain", "splunk_hec", "https://hec.example:8088", {"index": "main"}),
            (own, "own", "splunk_hec", "https://hec.example:8088", {"sourcetype": "custom:st"}),
            (udp, "udp", "syslog_udp", "udp://siem.example:514", {}),
        ):
            conn.execute(
                text(
                    "INSERT INTO destinations (id, tenant_id, name, delivery_type, format,"
                    " endpoint, options, filters, enabled, created_us, updated_us) VALUES"
                    " (:id, :tenant, :name, :kind, 'json', :endpoint, :options, '{}', true,"
                    " 0, 0)"
                ),
                {"id": ident, "tenant": str(uuid.uuid4()), "name": name, "kind": kind,
                 "endpoint": endpoint, "options": orjson.dumps(options).decode()},
            )  # fmt: skip
    upgrade(engine)
    with engine.connect() as conn:
        stored = {
            ident: orjson.loads(options)
            for ident, options in conn.execute(text("SELECT id, options FROM destinations"))
        }
    engine.dispose()
    assert stored[plain] == {"index": "main", "source": "", "sourcetype": ""}
    assert stored[own] == {"sourcetype": "custom:st", "source": ""}
    assert stored[udp] == {"truncate": True}
    kept = validate_destination(
        "splunk_hec", "https://hec.example:8088", stored[plain], development=False
    )
    assert isinstance(kept, HecConfig)
    assert (kept.source, kept.sourcetype) == (None, None)
