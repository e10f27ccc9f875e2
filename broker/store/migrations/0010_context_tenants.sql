-- @contexts belong to a tenant: the one that added a Hosted context, the one that used a remote
-- URL for a Cached copy (issue 11, defect 9). Another tenant neither lists, reads nor deletes them;
-- a remote document cached by one tenant is copied for another instead of fetched again.
-- Rows from before have no known owner: they go to the default tenant.
ALTER TABLE jsonld_contexts ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE jsonld_contexts ALTER COLUMN tenant DROP DEFAULT;
ALTER TABLE jsonld_contexts DROP CONSTRAINT jsonld_contexts_url_key;
ALTER TABLE jsonld_contexts ADD CONSTRAINT jsonld_contexts_tenant_url_key UNIQUE (tenant, url);
CREATE INDEX jsonld_contexts_cached_url_idx ON jsonld_contexts (url) WHERE kind = 'Cached';
