"""The NGSI-LD information model in memory: entities as stored (expanded), parsing and rendering."""
