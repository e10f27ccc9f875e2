-- An apikey belongs to one tenant (issue 12 item 7). A gateway names only its apikey, so an apikey
-- that two tenants hold lets one of them receive the other's measurements (a device of its own
-- under the other's apikey and device id) or claim its groups. service_groups' key (resource,
-- apikey) kept the same pair unique, but not the apikey on another resource; devices with an
-- apikey of their own were not checked at all.
--
-- One owner row per apikey, claimed by the first group or device that uses it and released when
-- the owner's last one goes. A plain unique index cannot say it: one tenant may use its apikey on
-- several resources and devices. Existing rows: the tenant that used an apikey first owns it; rows
-- of other tenants sharing it stay as they are (the first of them inherits the key when its owner
-- lets it go), but none can be added.

CREATE TABLE apikey_owners (
    apikey text PRIMARY KEY,
    tenant text NOT NULL
);

INSERT INTO apikey_owners (apikey, tenant)
SELECT DISTINCT ON (apikey) apikey, tenant
FROM (
    SELECT apikey, tenant, created_at FROM service_groups
    UNION ALL
    SELECT apikey, tenant, created_at FROM devices WHERE apikey <> ''
) AS used
ORDER BY apikey, created_at, tenant;

CREATE FUNCTION claim_apikey() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    holder text;
BEGIN
    IF NEW.apikey = '' THEN
        RETURN NEW;
    END IF;
    -- Usually the key is claimed already: one look-up. Else claim it, twice at most: the owner
    -- row may be released by another transaction between the two statements.
    SELECT tenant INTO holder FROM apikey_owners WHERE apikey = NEW.apikey;
    FOR attempt IN 1..2 LOOP
        EXIT WHEN FOUND;
        INSERT INTO apikey_owners (apikey, tenant) VALUES (NEW.apikey, NEW.tenant)
        ON CONFLICT (apikey) DO NOTHING;
        SELECT tenant INTO holder FROM apikey_owners WHERE apikey = NEW.apikey;
    END LOOP;
    IF holder IS DISTINCT FROM NEW.tenant THEN
        -- The key itself stays out of the message: PostgreSQL logs errors.
        RAISE EXCEPTION 'the apikey is held by another tenant'
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'apikey_owners_tenant';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION release_apikey() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    heir text;
BEGIN
    IF OLD.apikey = ''
       OR EXISTS (SELECT 1 FROM service_groups WHERE apikey = OLD.apikey AND tenant = OLD.tenant)
       OR EXISTS (SELECT 1 FROM devices WHERE apikey = OLD.apikey AND tenant = OLD.tenant) THEN
        RETURN NULL;
    END IF;
    -- The owner's last use is gone. A tenant still using the key (rows shared before this
    -- migration) inherits it, so a third one cannot claim it; else it is free.
    SELECT tenant INTO heir FROM (
        SELECT tenant, created_at FROM service_groups WHERE apikey = OLD.apikey
        UNION ALL
        SELECT tenant, created_at FROM devices WHERE apikey = OLD.apikey
    ) AS used ORDER BY created_at, tenant LIMIT 1;
    IF heir IS NULL THEN
        DELETE FROM apikey_owners WHERE apikey = OLD.apikey AND tenant = OLD.tenant;
    ELSE
        UPDATE apikey_owners SET tenant = heir WHERE apikey = OLD.apikey AND tenant = OLD.tenant;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER service_groups_claim_apikey BEFORE INSERT OR UPDATE OF apikey, tenant ON service_groups
    FOR EACH ROW EXECUTE FUNCTION claim_apikey();
CREATE TRIGGER devices_claim_apikey BEFORE INSERT OR UPDATE OF apikey, tenant ON devices
    FOR EACH ROW EXECUTE FUNCTION claim_apikey();
CREATE TRIGGER service_groups_release_apikey AFTER DELETE OR UPDATE OF apikey, tenant ON service_groups
    FOR EACH ROW EXECUTE FUNCTION release_apikey();
CREATE TRIGGER devices_release_apikey AFTER DELETE OR UPDATE OF apikey, tenant ON devices
    FOR EACH ROW EXECUTE FUNCTION release_apikey();
