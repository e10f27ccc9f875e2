"""Adapter mode (issue 14 item 5): every change from the device layer (or every change) also goes to
an external NGSI-LD broker (Orion-LD, Scorpio, Stellio, or another instance of this one).

- ``changes``: the write-transaction hook that turns stored changes into forwarding outbox rows;
- ``target``: the external broker as an HTTP client sees it (batch upsert/delete, answers sorted
  into delivered, refused for good, or to retry);
- ``forwarder``: the supervised loop that claims rows per entity, sends them, backs off, reports.
"""
