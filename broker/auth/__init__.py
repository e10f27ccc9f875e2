"""Who is asking, and what they may do: identities, roles, the route permission table (issue 12).

``model`` names the roles and permissions and what each role holds; ``routes`` is the one table
saying which permission every route needs; ``keys`` makes, checks and caches API keys (stored
only as hashes, in ``broker.store.apikeys``); ``oidc`` checks OpenID Connect bearer tokens
against the configured provider's keys; ``grants`` says what another tenant (or everyone: open
data) may read of a tenant; ``ratelimit`` holds each identity to its request rate; ``middleware``
authenticates each request and refuses it (401/403/429 ProblemDetails) before any handler runs.
The API imports this package; it imports nothing of the API.
"""
