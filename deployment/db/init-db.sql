-- =============================================================================
-- pgmcp: least-privilege database roles (the handbook's "資料庫使用者權限")
--
--   mcp_user    read-only: CONNECT, USAGE on the schemas, SELECT on their tables,
--               views and sequences (now and, through default privileges, later),
--               no CREATE anywhere, and default_transaction_read_only = on.
--   mcp_writer  mcp_user + INSERT, UPDATE, DELETE on the tables of public (and
--               USAGE on their sequences, so serial ids work): the "limited
--               write" case. Point DB_USER at it only where writes are wanted.
--
-- Run it with psql as a superuser (or a role with CREATEROLE that owns the
-- tables) in the database pgmcp will use; it is re-runnable (run it again after
-- creating tables as another role, or to change a password):
--
--   MCP_USER_PASSWORD='...' psql -v ON_ERROR_STOP=1 -d mydb -f deployment/db/init-db.sql
--   psql -v ON_ERROR_STOP=1 -v mcp_password='...' -d mydb -f deployment/db/init-db.sql
--
-- psql variables (-v NAME=VALUE); each falls back to the environment variable
-- named after it (read with \getenv, psql 15+), then to the default:
--
--   mcp_password         MCP_USER_PASSWORD    password of mcp_user      (none)
--   mcp_writer_password  MCP_WRITER_PASSWORD  password of mcp_writer    (none)
--   mcp_role             MCP_ROLE             read-only role name       mcp_user
--   mcp_writer_role      MCP_WRITER_ROLE      writer role name          mcp_writer
--   mcp_schemas          MCP_SCHEMAS          schemas to read           public,analytics
--   mcp_writer_schemas   MCP_WRITER_SCHEMAS   schemas to write          public
--
-- A role created without a password cannot log in with password
-- authentication (scram/md5): nothing here ships a default password. An
-- existing role keeps its password when none is given. Schemas that do not
-- exist are skipped. In docker-compose the postgres service sets
-- MCP_USER_PASSWORD from DB_PASSWORD (deployment/docker/docker-compose.yml).
--
-- Note: PostgreSQL has no DROP privilege (the handbook's "REVOKE DROP"): only
-- a table's owner can drop or alter it, and these roles own nothing.
-- =============================================================================

\set ON_ERROR_STOP on

\if :{?mcp_password}
\else
    \getenv mcp_password MCP_USER_PASSWORD
\endif
\if :{?mcp_writer_password}
\else
    \getenv mcp_writer_password MCP_WRITER_PASSWORD
\endif
\if :{?mcp_role}
\else
    \getenv mcp_role MCP_ROLE
\endif
\if :{?mcp_writer_role}
\else
    \getenv mcp_writer_role MCP_WRITER_ROLE
\endif
\if :{?mcp_schemas}
\else
    \getenv mcp_schemas MCP_SCHEMAS
\endif
\if :{?mcp_writer_schemas}
\else
    \getenv mcp_writer_schemas MCP_WRITER_SCHEMAS
\endif
\if :{?mcp_password}
\else
    \set mcp_password ''
\endif
\if :{?mcp_writer_password}
\else
    \set mcp_writer_password ''
\endif
\if :{?mcp_role}
\else
    \set mcp_role mcp_user
\endif
\if :{?mcp_writer_role}
\else
    \set mcp_writer_role mcp_writer
\endif
\if :{?mcp_schemas}
\else
    \set mcp_schemas public,analytics
\endif
\if :{?mcp_writer_schemas}
\else
    \set mcp_writer_schemas public
\endif

-- Hand the values to the SQL below as session settings (never echoed).
SET pgmcp.mcp_password = :'mcp_password';
SET pgmcp.mcp_writer_password = :'mcp_writer_password';
SET pgmcp.mcp_role = :'mcp_role';
SET pgmcp.mcp_writer_role = :'mcp_writer_role';
SET pgmcp.mcp_schemas = :'mcp_schemas';
SET pgmcp.mcp_writer_schemas = :'mcp_writer_schemas';

-- ---- end of psql prelude: plain SQL from here on (reads the pgmcp.* settings) ----

SET client_min_messages = warning;

-- Nobody but owners creates objects in public (the default since PostgreSQL 15;
-- needed on older servers and on databases created from a loosened template).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
    reader    text := coalesce(nullif(current_setting('pgmcp.mcp_role', true), ''), 'mcp_user');
    writer    text := coalesce(nullif(current_setting('pgmcp.mcp_writer_role', true), ''), 'mcp_writer');
    reader_pw text := nullif(current_setting('pgmcp.mcp_password', true), '');
    writer_pw text := nullif(current_setting('pgmcp.mcp_writer_password', true), '');
    read_schemas  text[] := string_to_array(replace(coalesce(nullif(
                        current_setting('pgmcp.mcp_schemas', true), ''), 'public,analytics'), ' ', ''), ',');
    write_schemas text[] := string_to_array(replace(coalesce(nullif(
                        current_setting('pgmcp.mcp_writer_schemas', true), ''), 'public'), ' ', ''), ',');
    s text;
    r text;
BEGIN
    -- roles: login, nothing else
    FOREACH r IN ARRAY ARRAY[reader, writer] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT', r);
    END LOOP;
    IF reader_pw IS NOT NULL THEN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', reader, reader_pw);
    END IF;
    IF writer_pw IS NOT NULL THEN
        EXECUTE format('ALTER ROLE %I PASSWORD %L', writer, writer_pw);
    END IF;

    -- the read-only role cannot write even where a grant slips through
    EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', reader);
    -- the writer has everything the reader has
    IF NOT pg_has_role(writer, reader, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', reader, writer);
    END IF;

    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), reader);

    FOREACH s IN ARRAY read_schemas LOOP
        CONTINUE WHEN s = '' OR NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, reader);
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, %I, %I', s, reader, writer);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s, reader);
        EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s, reader);
        -- tables the running role creates later in this schema
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I', s, reader);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON SEQUENCES TO %I', s, reader);
    END LOOP;

    FOREACH s IN ARRAY write_schemas LOOP
        CONTINUE WHEN s = '' OR NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, writer);
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, %I, %I', s, reader, writer);
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', s, writer);
        EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO %I', s, writer);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT INSERT, UPDATE, DELETE ON TABLES TO %I', s, writer);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE ON SEQUENCES TO %I', s, writer);
    END LOOP;
END
$$;

RESET pgmcp.mcp_password;
RESET pgmcp.mcp_writer_password;
RESET client_min_messages;
