"""The NGSI-LD HTTP API: thin aiohttp handlers, one module per resource."""
