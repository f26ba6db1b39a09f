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


def test_hec_destinations_stored_before_the_source_defaults_keep_sending_none(
    store_url: str,
) -> None:
    """An HEC destination stored at revision 0005 without source or sourcetype still sends
    neither after the upgrade (the options become ""), while its own values stay."""
    engine = make_engine(store_url)
    config = _alembic_config()
    with writing(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    plain, own = str(uuid.uuid4()), str(uuid.uuid4())
    with engine.begin() as conn:
        for ident, name, options in (
            (plain, "plain", {"index": "main"}),
            (own, "own", {"sourcetype": "custom:st"}),
        ):
            conn.execute(
                text(
                    "INSERT INTO destinations (id, tenant_id, name, delivery_type, format,"
                    " endpoint, options, filters, enabled, created_us, updated_us) VALUES"
                    " (:id, :tenant, :name, 'splunk_hec', 'json', 'https://hec.example:8088',"
                    " :options, '{}', true, 0, 0)"
                ),
                {"id": ident, "tenant": str(uuid.uuid4()), "name": name,
                 "options": orjson.dumps(options).decode()},
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
    kept = validate_destination(
        "splunk_hec", "https://hec.example:8088", stored[plain], development=False
    )
    assert isinstance(kept, HecConfig)
    assert (kept.source, kept.sourcetype) == (None, None)
