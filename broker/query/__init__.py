"""Query languages (q, scopeQ, geoQ, type expressions) parsed into small ASTs, then translated to SQL.

Every translator writes a boolean SQL expression over the ``entities`` row
aliased ``e`` (columns: tenant, id, types text[], scopes text[], attrs jsonb,
location geometry, created_at, modified_at) and puts every value in ``Params``:
no value is ever formatted into SQL text.
"""
