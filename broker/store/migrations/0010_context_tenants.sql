-- @contexts belong to a tenant: the one that added a Hosted context, the one that used a remote
-- URL for a Cached copy (issue 11, defect 9). Another tenant neither lists, reads nor deletes them;
-- a remote document cached by one tenant is copied for another instead of fetched again.
-- Rows from before have no recorded owner: they go to the default tenant, and every tenant whose
-- subscriptions name a Hosted one gets its own copy under the same URL, so they keep loading.
ALTER TABLE jsonld_contexts ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE jsonld_contexts ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE jsonld_contexts DROP CONSTRAINT jsonld_contexts_url_key;
ALTER TABLE jsonld_contexts ADD CONSTRAINT jsonld_contexts_tenant_url_key UNIQUE (tenant, url);
CREATE INDEX jsonld_contexts_cached_url_idx ON jsonld_contexts (url) WHERE kind = 'Cached';

INSERT INTO jsonld_contexts (id, tenant, url, kind, body, created_at, last_used_at, hits)
SELECT DISTINCT md5(s.tenant || ' ' || c.id), s.tenant, c.url, c.kind, c.body, c.created_at, c.last_used_at, 0
FROM jsonld_contexts c
JOIN subscriptions s ON s.context = to_jsonb(c.url) OR s.context @> jsonb_build_array(c.url)
WHERE c.kind = 'Hosted' AND c.tenant = '' AND s.tenant <> ''
ON CONFLICT DO NOTHING;
