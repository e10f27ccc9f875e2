-- Secrets the service generates once and every process shares (e.g. the key of watch-tag
-- pseudonyms when NGSI_PSEUDONYM_SECRET is not set): losing one would change every pseudonym.
CREATE TABLE hub_secrets (
    name        text        PRIMARY KEY,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
