-- =============================================================================
-- pgmcp demo schema and data (single source of truth)
--
-- Loaded by:
--   * the embedded PostgreSQL of `pgmcp serve` on first start (shipped in the
--     wheel as pgmcp/demo/init-db-dev.sql);
--   * docker-compose dev (deployment/docker/docker-compose.dev.yml mounts this
--     very file into /docker-entrypoint-initdb.d);
--   * by hand:  psql -v ON_ERROR_STOP=1 -d demo -f src/pgmcp/demo/init-db-dev.sql
--
-- It serves the handbook's scenarios:
--   1. BI analysis      monthly sales of orders (order_date >= '2024-01-01'
--                       gives 12 months), customer_segment / lifetime_value;
--   2. migration        customers -> customers_v2 (empty target), and some
--                       deliberately invalid e-mails for the quality check;
--   3. monitoring       logs, pg_stat_user_tables;
--   4. slow queries     orders.customer_id is a foreign key WITHOUT an index
--                       (on purpose): `WHERE customer_id = $1` and the joins on
--                       it are sequential scans that explain_query can flag.
--
-- Known problems, on purpose, for analyze_db_health / recommend_indexes / get_top_queries
-- (a DBA would want each of them found; none of them breaks the scenarios):
--   * foreign key without an index: orders.customer_id -> customers.id; the join
--     "orders o JOIN customers c ON c.id = o.customer_id WHERE o.customer_id = $1" scans
--     all 20,000 orders (recommend_indexes proposes orders (customer_id));
--   * duplicate index: orders_status_dup_idx repeats orders_status_idx column for column
--     (analyze_db_health "indexes": drop the duplicate);
--   * unused index: order_items_product_quantity_idx (product_id, quantity, unit_price),
--     about 1.5 MB, built for a report that never ran (analyze_db_health "indexes": never
--     scanned);
--   * sequence near its end: ticket_number_seq is a smallint sequence at 31,000 of 32,767
--     (about 95 %; analyze_db_health "sequences").
--   and the tool examples: users (email = 'user@example.com'),
--   INSERT INTO orders (user_id, total) VALUES (123, 299.99),
--   UPDATE inventory SET stock = stock - 1 WHERE product_id = 456,
--   INSERT INTO logs (level, message, timestamp) VALUES (...).
--
-- Properties:
--   * deterministic: every "random" value is an integer hash of a row number
--     (pg_temp.demo_rand), never random(); same data on every run and version;
--   * re-runnable: CREATE ... IF NOT EXISTS, and each table is filled only
--     while it is empty (a second run changes nothing);
--   * portable: plain SQL + PL/pgSQL, PostgreSQL 14 .. 18; no extensions (the embedded server
--     creates pg_stat_statements itself);
--   * fast: well under 2 s on an empty database.
-- =============================================================================

SET client_min_messages = warning;
-- The generators below have huge row estimates; JIT compiling them costs more than running them.
SET jit = off;

-- Deterministic pseudo-random number in [0, 1) from (stream, n): an integer hash
-- (multiply, xor-shift, multiply; no random(), no setseed), identical on every run and
-- every PostgreSQL version. Session-local helper (pg_temp), gone when the loading session
-- ends; a single-expression SQL function, so the planner inlines it.
CREATE OR REPLACE FUNCTION pg_temp.demo_rand(stream integer, n bigint) RETURNS double precision
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT ((((((stream::bigint * 1000003 + n) * 2654435761) & 4294967295)
                    # ((((stream::bigint * 1000003 + n) * 2654435761) & 4294967295) >> 15))
                   * 1911520717) & 4294967295)::double precision / 4294967296 $$;

-- -----------------------------------------------------------------------------
-- Schema
-- -----------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS public.users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.customers (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL,
    email            text,
    phone            text,
    customer_segment text NOT NULL DEFAULT 'consumer'
                     CHECK (customer_segment IN ('enterprise', 'smb', 'consumer')),
    lifetime_value   numeric(12,2) NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.customers_v2 (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    phone       text,
    created_at  timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS public.products (
    id          bigserial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    category    text NOT NULL,
    price       numeric(10,2) NOT NULL CHECK (price >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.inventory (
    product_id  bigint PRIMARY KEY,
    stock       integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    warehouse   text NOT NULL DEFAULT 'Taipei',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.orders (
    id            bigserial PRIMARY KEY,
    customer_id   bigint,
    user_id       bigint,
    order_date    timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('completed', 'pending', 'cancelled', 'refunded')),
    total         numeric(12,2),
    total_amount  numeric(12,2),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.order_items (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL,
    product_id  bigint NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(10,2) NOT NULL CHECK (unit_price >= 0)
);

CREATE TABLE IF NOT EXISTS public.logs (
    id           bigserial PRIMARY KEY,
    level        text NOT NULL,
    message      text NOT NULL,
    "timestamp"  timestamp NOT NULL DEFAULT LOCALTIMESTAMP,
    source       text,
    connection   text
);

-- Foreign keys, the totals trigger and the secondary indexes are added after the data
-- (below): one validation join instead of 70,000 row-by-row checks.

-- orders.total and orders.total_amount are the same amount under two names (the
-- handbook uses both): whichever one a statement sets, the other follows.
CREATE OR REPLACE FUNCTION public.orders_sync_totals() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.total_amount := COALESCE(NEW.total_amount, NEW.total);
        NEW.total := COALESCE(NEW.total, NEW.total_amount);
    ELSIF NEW.total IS DISTINCT FROM OLD.total AND NEW.total_amount IS NOT DISTINCT FROM OLD.total_amount THEN
        NEW.total_amount := NEW.total;
    ELSIF NEW.total_amount IS DISTINCT FROM OLD.total_amount AND NEW.total IS NOT DISTINCT FROM OLD.total THEN
        NEW.total := NEW.total_amount;
    END IF;
    RETURN NEW;
END
$$;

-- -----------------------------------------------------------------------------
-- Comments (list_tables / get_table_schema show them)
-- -----------------------------------------------------------------------------

COMMENT ON TABLE public.users IS 'Application user accounts (the handbook''s users examples; user@example.com exists).';
COMMENT ON COLUMN public.users.id IS 'User id.';
COMMENT ON COLUMN public.users.email IS 'Login e-mail, unique.';
COMMENT ON COLUMN public.users.name IS 'Display name.';
COMMENT ON COLUMN public.users.created_at IS 'When the account was created.';

COMMENT ON TABLE public.customers IS 'CRM customers, 2023-01 .. 2024-12; some e-mails are invalid on purpose (data-quality scenario).';
COMMENT ON COLUMN public.customers.id IS 'Customer id.';
COMMENT ON COLUMN public.customers.name IS 'Customer or company name.';
COMMENT ON COLUMN public.customers.email IS 'Contact e-mail; not validated (about 1 in 40 is malformed, a few are NULL).';
COMMENT ON COLUMN public.customers.phone IS 'Contact phone number, free format.';
COMMENT ON COLUMN public.customers.customer_segment IS 'Segment: enterprise, smb or consumer.';
COMMENT ON COLUMN public.customers.lifetime_value IS 'Sum of the customer''s completed orders.';
COMMENT ON COLUMN public.customers.created_at IS 'When the customer signed up.';

COMMENT ON TABLE public.customers_v2 IS 'Empty migration target of the customers table (migration scenario).';
COMMENT ON COLUMN public.customers_v2.id IS 'Customer id, kept from customers.id.';
COMMENT ON COLUMN public.customers_v2.name IS 'Customer name.';
COMMENT ON COLUMN public.customers_v2.email IS 'Contact e-mail.';
COMMENT ON COLUMN public.customers_v2.phone IS 'Contact phone number, normalized.';
COMMENT ON COLUMN public.customers_v2.created_at IS 'When the customer signed up.';

COMMENT ON TABLE public.products IS 'Product catalogue.';
COMMENT ON COLUMN public.products.id IS 'Product id.';
COMMENT ON COLUMN public.products.sku IS 'Stock keeping unit, unique.';
COMMENT ON COLUMN public.products.name IS 'Product name.';
COMMENT ON COLUMN public.products.category IS 'Product category.';
COMMENT ON COLUMN public.products.price IS 'List price.';
COMMENT ON COLUMN public.products.created_at IS 'When the product was listed.';

COMMENT ON TABLE public.inventory IS 'Stock on hand, one row per product; stock can never go negative.';
COMMENT ON COLUMN public.inventory.product_id IS 'The product (products.id).';
COMMENT ON COLUMN public.inventory.stock IS 'Units on hand (>= 0).';
COMMENT ON COLUMN public.inventory.warehouse IS 'Warehouse holding the stock.';
COMMENT ON COLUMN public.inventory.updated_at IS 'Last stock change.';

COMMENT ON TABLE public.orders IS 'Sales orders 2023-01 .. 2024-12. customer_id has no index (slow-query scenario).';
COMMENT ON COLUMN public.orders.id IS 'Order id.';
COMMENT ON COLUMN public.orders.customer_id IS 'Buying customer (customers.id); NOT indexed on purpose.';
COMMENT ON COLUMN public.orders.user_id IS 'User account that placed the order online (users.id), if any.';
COMMENT ON COLUMN public.orders.order_date IS 'When the order was placed.';
COMMENT ON COLUMN public.orders.status IS 'completed, pending, cancelled or refunded.';
COMMENT ON COLUMN public.orders.total IS 'Order amount (same as total_amount; either one may be written).';
COMMENT ON COLUMN public.orders.total_amount IS 'Order amount: sum of quantity * unit_price of its items.';
COMMENT ON COLUMN public.orders.created_at IS 'When the row was created.';

COMMENT ON TABLE public.order_items IS 'Order lines.';
COMMENT ON COLUMN public.order_items.id IS 'Line id.';
COMMENT ON COLUMN public.order_items.order_id IS 'The order (orders.id).';
COMMENT ON COLUMN public.order_items.product_id IS 'The product (products.id).';
COMMENT ON COLUMN public.order_items.quantity IS 'Units ordered.';
COMMENT ON COLUMN public.order_items.unit_price IS 'Price per unit at order time.';

COMMENT ON TABLE public.logs IS 'Application log events of 2024.';
COMMENT ON COLUMN public.logs.id IS 'Event id.';
COMMENT ON COLUMN public.logs.level IS 'DEBUG, INFO, WARNING or ERROR.';
COMMENT ON COLUMN public.logs.message IS 'Log message.';
COMMENT ON COLUMN public.logs."timestamp" IS 'When the event happened (local time, no time zone).';
COMMENT ON COLUMN public.logs.source IS 'Component that logged the event.';
COMMENT ON COLUMN public.logs.connection IS 'Connection id concerned, if any.';

-- -----------------------------------------------------------------------------
-- Data (each table only while empty)
-- -----------------------------------------------------------------------------

-- users: 200 accounts; id 1 is user@example.com, id 123 places the handbook's order.
INSERT INTO public.users (id, email, name, created_at)
SELECT g,
       CASE WHEN g = 1 THEN 'user@example.com' ELSE 'user' || g || '@example.com' END,
       (ARRAY['Alice','Bob','Carol','David','Emma','Frank','Grace','Henry','Ivy','Jack',
              'Kevin','Linda','Mei','Ning','Oscar','Peggy'])[1 + (g % 16)]
         || ' ' ||
       (ARRAY['Chen','Lin','Huang','Chang','Lee','Wang','Wu','Liu','Tsai','Yang',
              'Smith','Johnson'])[1 + ((g / 16) % 12)],
       timestamptz '2023-01-01 00:00:00+00' + (g * interval '3 days 11 hours')
FROM generate_series(1, 200) AS g
WHERE NOT EXISTS (SELECT 1 FROM public.users);

-- customers: 2,000; about 10% enterprise, 30% smb, 60% consumer.
INSERT INTO public.customers (id, name, email, phone, customer_segment, lifetime_value, created_at)
SELECT g,
       CASE WHEN seg = 'consumer' THEN first || ' ' || last
            ELSE last || ' ' || (ARRAY['Trading','Technology','Foods','Logistics','Design',
                                       'Electronics','Holdings','Studio'])[1 + (g % 8)]
                 || CASE WHEN seg = 'enterprise' THEN ' Corp.' ELSE ' Ltd.' END
       END,
       CASE
           WHEN g % 250 = 0 THEN NULL
           WHEN g % 40 = 7 THEN
               (ARRAY[lower(first) || '.' || lower(last) || ' at example.com',  -- no @
                      lower(first) || '@localhost',                             -- no domain dot
                      lower(first) || '.' || lower(last) || '@example',         -- no TLD
                      '@' || lower(last) || '.com',                             -- empty local part
                      lower(first) || ' ' || lower(last) || '@example.com',     -- space
                      lower(first) || '@mail.example.c'])                       -- 1-letter TLD
               [1 + ((g / 40) % 6)]
           ELSE lower(first) || '.' || lower(last) || g || '@'
                || (ARRAY['example.com','mail.example.org','example.com.tw','corp.example.net'])[1 + (g % 4)]
       END,
       CASE g % 3
           WHEN 0 THEN '+886-2-' || lpad((g * 7919 % 10000000)::text, 7, '0')
           WHEN 1 THEN '09' || lpad((g * 104729 % 100000000)::text, 8, '0')
           ELSE '(02) ' || lpad((g * 3571 % 10000)::text, 4, '0') || '-' || lpad((g * 31 % 10000)::text, 4, '0')
       END,
       seg,
       0,
       timestamptz '2023-01-01 00:00:00+00'
         + (floor(power(pg_temp.demo_rand(1, g), 1.6) * 730 * 86400) * interval '1 second')
FROM (
    SELECT g,
           CASE WHEN pg_temp.demo_rand(2, g) < 0.10 THEN 'enterprise'
                WHEN pg_temp.demo_rand(2, g) < 0.40 THEN 'smb'
                ELSE 'consumer' END AS seg,
           (ARRAY['Alice','Bob','Carol','David','Emma','Frank','Grace','Henry','Ivy','Jack',
                  'Kevin','Linda','Mei','Ning','Oscar','Peggy','Quinn','Rita','Sam','Tina',
                  'Uma','Victor','Wendy','Xin','Yu','Zoe'])[1 + (g % 26)] AS first,
           (ARRAY['Chen','Lin','Huang','Chang','Lee','Wang','Wu','Liu','Tsai','Yang','Hsu',
                  'Cheng','Kuo','Hsieh','Lai','Smith','Johnson','Brown','Garcia','Tanaka'])
               [1 + ((g * 7) % 20)] AS last
    FROM generate_series(1, 2000) AS g
) AS c
WHERE NOT EXISTS (SELECT 1 FROM public.customers);

-- products: 500 (the handbook updates product 456).
INSERT INTO public.products (id, sku, name, category, price, created_at)
SELECT g,
       'SKU-' || lpad(g::text, 5, '0'),
       (ARRAY['Classic','Premium','Eco','Smart','Compact','Pro','Ultra','Mini','Deluxe','Basic'])
           [1 + ((g * 3) % 10)] || ' ' ||
       (ARRAY['Laptop','Headphones','Desk Lamp','Coffee Maker','Backpack','Running Shoes',
              'Novel','Board Game','Vitamins','Office Chair'])[1 + (g % 10)] || ' ' || g,
       (ARRAY['Electronics','Audio','Home','Kitchen','Bags','Sports',
              'Books','Toys','Health','Furniture'])[1 + (g % 10)],
       round((5 + power(pg_temp.demo_rand(3, g), 3) * 1495)::numeric, 2),
       timestamptz '2022-06-01 00:00:00+00' + g * interval '13 hours'
FROM generate_series(1, 500) AS g
WHERE NOT EXISTS (SELECT 1 FROM public.products);

-- inventory: one row per product; some are out of stock; product 456 has stock.
INSERT INTO public.inventory (product_id, stock, warehouse, updated_at)
SELECT p.id,
       CASE WHEN p.id = 456 THEN 42
            WHEN p.id % 23 = 0 THEN 0
            ELSE floor(pg_temp.demo_rand(4, p.id) * 500)::int END,
       (ARRAY['Taipei','Taichung','Kaohsiung'])[1 + (p.id % 3)::int],
       timestamptz '2024-12-01 00:00:00+00' + p.id * interval '1 hour'
FROM public.products AS p
WHERE NOT EXISTS (SELECT 1 FROM public.inventory);

-- orders (20,000) and order_items (about 50,000), staged so that each order's total is
-- the sum of its lines. Each order falls between its customer's sign-up and 2024-12-31,
-- so recent months have more orders (growth).
CREATE TEMP TABLE IF NOT EXISTS demo_order_items (
    order_id bigint, line int, product_id bigint, quantity int, unit_price numeric(10,2)
);
TRUNCATE demo_order_items;

INSERT INTO demo_order_items (order_id, line, product_id, quantity, unit_price)
SELECT o.g, l.line, p.id, q.quantity, p.price
FROM generate_series(1, 20000) AS o(g)
-- (OFFSET 0 keeps this a plain column, so demo_rand(2, customer_id) stays inlined)
CROSS JOIN LATERAL (SELECT 1 + floor(pg_temp.demo_rand(8, o.g) * 2000)::bigint AS customer_id OFFSET 0) AS oc
CROSS JOIN LATERAL generate_series(1, 1 + floor(pg_temp.demo_rand(5, o.g) * 4)::int) AS l(line)
CROSS JOIN LATERAL (
    SELECT 1 + floor(pg_temp.demo_rand(6, o.g * 8 + l.line) * 500)::bigint AS product_id,
           -- enterprise customers buy in bulk, consumers one or two at a time; the order's
           -- customer is the one the orders INSERT below picks (stream 8), its segment stream 2.
           CASE WHEN seg.r < 0.10 THEN 1 + floor(power(pg_temp.demo_rand(7, o.g * 8 + l.line), 2) * 20)::int
                WHEN seg.r < 0.40 THEN 1 + floor(power(pg_temp.demo_rand(7, o.g * 8 + l.line), 2) * 8)::int
                ELSE 1 + floor(power(pg_temp.demo_rand(7, o.g * 8 + l.line), 3) * 4)::int
           END AS quantity
    FROM (SELECT pg_temp.demo_rand(2, oc.customer_id) AS r) AS seg
) AS q
JOIN public.products AS p ON p.id = q.product_id
WHERE NOT EXISTS (SELECT 1 FROM public.orders);

INSERT INTO public.orders (id, customer_id, user_id, order_date, status, total, total_amount, created_at)
SELECT o.g,
       c.id,
       CASE WHEN o.g % 3 = 0 THEN 1 + (o.g % 200) END,
       d.order_date,
       CASE WHEN d.order_date >= timestamptz '2024-12-20 00:00:00+00' AND s.r < 0.60 THEN 'pending'
            WHEN s.r < 0.86 THEN 'completed'
            WHEN s.r < 0.93 THEN 'cancelled'
            WHEN s.r < 0.97 THEN 'pending'
            ELSE 'refunded' END,
       t.amount,
       t.amount,
       d.order_date + interval '2 minutes'
FROM generate_series(1, 20000) AS o(g)
JOIN public.customers AS c
  ON c.id = 1 + floor(pg_temp.demo_rand(8, o.g) * 2000)::bigint
CROSS JOIN LATERAL (
    SELECT date_trunc('second', c.created_at
             + pg_temp.demo_rand(9, o.g)
               * (timestamptz '2024-12-31 23:59:59+00' - c.created_at)) AS order_date
) AS d
CROSS JOIN LATERAL (SELECT pg_temp.demo_rand(10, o.g) AS r) AS s
JOIN (
    SELECT order_id, sum(quantity * unit_price)::numeric(12,2) AS amount
    FROM demo_order_items GROUP BY order_id
) AS t ON t.order_id = o.g
WHERE NOT EXISTS (SELECT 1 FROM public.orders);

INSERT INTO public.order_items (order_id, product_id, quantity, unit_price)
SELECT order_id, product_id, quantity, unit_price
FROM demo_order_items
WHERE NOT EXISTS (SELECT 1 FROM public.order_items)
ORDER BY order_id, line;

DROP TABLE demo_order_items;

-- lifetime_value = the customer's completed orders (only while still unset).
UPDATE public.customers AS c
SET lifetime_value = s.ltv
FROM (SELECT customer_id, sum(total_amount) AS ltv
      FROM public.orders WHERE status = 'completed' GROUP BY customer_id) AS s
WHERE s.customer_id = c.id
  AND NOT EXISTS (SELECT 1 FROM public.customers WHERE lifetime_value <> 0);

-- logs: 5,000 events over 2024.
INSERT INTO public.logs (level, message, "timestamp", source, connection)
SELECT CASE WHEN r < 0.05 THEN 'DEBUG' WHEN r < 0.75 THEN 'INFO'
            WHEN r < 0.90 THEN 'WARNING' ELSE 'ERROR' END,
       CASE WHEN r < 0.05 THEN 'Cache lookup for key session:' || g
            WHEN r < 0.75 THEN (ARRAY['User login','User logout','Order created','Payment captured',
                                      'Report generated','Inventory synced'])[1 + (g % 6)]
            WHEN r < 0.90 THEN (ARRAY['Slow query detected','Retrying request',
                                      'Pool nearly exhausted','Low stock'])[1 + (g % 4)]
            ELSE (ARRAY['Connection failed','Payment declined','Timeout calling upstream'])[1 + (g % 3)]
       END,
       timestamp '2024-01-01 00:00:00'
         + floor(pg_temp.demo_rand(11, g) * 366 * 86400) * interval '1 second',
       (ARRAY['api','worker','scheduler','auth'])[1 + (g % 4)],
       CASE WHEN g % 5 = 0 THEN (ARRAY['main_db','analytics_db'])[1 + (g / 5 % 2)] END
FROM (SELECT g, pg_temp.demo_rand(12, g) AS r FROM generate_series(1, 5000) AS g) AS l
WHERE NOT EXISTS (SELECT 1 FROM public.logs)
ORDER BY 3;

-- -----------------------------------------------------------------------------
-- Constraints, trigger and indexes (after the data, so loading stays fast)
-- -----------------------------------------------------------------------------

DO $$
DECLARE
    fk text[];
BEGIN
    FOREACH fk SLICE 1 IN ARRAY ARRAY[
        ['inventory',   'inventory_product_id_fkey',   'FOREIGN KEY (product_id) REFERENCES public.products (id) ON DELETE CASCADE'],
        ['orders',      'orders_customer_id_fkey',     'FOREIGN KEY (customer_id) REFERENCES public.customers (id)'],
        ['orders',      'orders_user_id_fkey',         'FOREIGN KEY (user_id) REFERENCES public.users (id)'],
        ['order_items', 'order_items_order_id_fkey',   'FOREIGN KEY (order_id) REFERENCES public.orders (id) ON DELETE CASCADE'],
        ['order_items', 'order_items_product_id_fkey', 'FOREIGN KEY (product_id) REFERENCES public.products (id)']
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conname = fk[2] AND conrelid = format('public.%I', fk[1])::regclass) THEN
            EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I %s', fk[1], fk[2], fk[3]);
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'orders_sync_totals' AND tgrelid = 'public.orders'::regclass) THEN
        CREATE TRIGGER orders_sync_totals BEFORE INSERT OR UPDATE ON public.orders
            FOR EACH ROW EXECUTE FUNCTION public.orders_sync_totals();
    END IF;
END
$$;

-- Indexes. Deliberately NOT indexed: orders.customer_id (scenario 4 finds it).
CREATE INDEX IF NOT EXISTS customers_created_at_idx  ON public.customers (created_at);
CREATE INDEX IF NOT EXISTS customers_segment_idx     ON public.customers (customer_segment);
CREATE INDEX IF NOT EXISTS products_category_idx     ON public.products (category);
CREATE INDEX IF NOT EXISTS orders_order_date_idx     ON public.orders (order_date);
CREATE INDEX IF NOT EXISTS orders_status_idx         ON public.orders (status);
CREATE INDEX IF NOT EXISTS order_items_order_id_idx  ON public.order_items (order_id);
CREATE INDEX IF NOT EXISTS logs_timestamp_idx        ON public.logs ("timestamp");
-- Known problems (see the header): a duplicate and an unused index.
CREATE INDEX IF NOT EXISTS orders_status_dup_idx     ON public.orders (status);
CREATE INDEX IF NOT EXISTS order_items_product_quantity_idx
    ON public.order_items (product_id, quantity, unit_price);

-- Known problem (see the header): support-ticket numbers from a smallint sequence that is
-- about 95 % used. Set once: a second run leaves it where it is.
CREATE SEQUENCE IF NOT EXISTS public.ticket_number_seq AS smallint;
DO $$
BEGIN
    IF (SELECT last_value FROM public.ticket_number_seq) < 31000 THEN
        PERFORM setval('public.ticket_number_seq', 31000);
    END IF;
END
$$;

-- Serial sequences continue after the explicit ids.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'customers', 'products', 'orders', 'order_items', 'logs'] LOOP
        EXECUTE format(
            'SELECT setval(pg_get_serial_sequence(%L, %L), GREATEST((SELECT max(id) FROM public.%I), 1))',
            'public.' || t, 'id', t);
    END LOOP;
END
$$;

-- -----------------------------------------------------------------------------
-- analytics schema: reporting views (list_schemas shows more than public)
-- -----------------------------------------------------------------------------

CREATE SCHEMA IF NOT EXISTS analytics;
COMMENT ON SCHEMA analytics IS 'Reporting views over the demo sales data.';

CREATE OR REPLACE VIEW analytics.monthly_revenue AS
SELECT date_trunc('month', order_date) AS month,
       sum(total_amount)::numeric(14,2)  AS revenue,
       count(*)                          AS order_count,
       round(avg(total_amount), 2)       AS avg_order_value
FROM public.orders
WHERE status = 'completed'
GROUP BY 1;
COMMENT ON VIEW analytics.monthly_revenue IS 'Revenue, order count and average order value of completed orders per month.';

CREATE OR REPLACE VIEW analytics.customer_segments AS
SELECT customer_segment,
       count(*)                          AS customer_count,
       round(avg(lifetime_value), 2)     AS avg_ltv,
       sum(lifetime_value)               AS total_ltv
FROM public.customers
GROUP BY customer_segment;
COMMENT ON VIEW analytics.customer_segments IS 'Customers and lifetime value per segment.';

CREATE OR REPLACE VIEW analytics.top_products AS
SELECT p.id AS product_id, p.sku, p.name, p.category,
       sum(oi.quantity)                          AS units_sold,
       sum(oi.quantity * oi.unit_price)::numeric(14,2) AS revenue
FROM public.order_items AS oi
JOIN public.orders AS o ON o.id = oi.order_id AND o.status = 'completed'
JOIN public.products AS p ON p.id = oi.product_id
GROUP BY p.id, p.sku, p.name, p.category;
COMMENT ON VIEW analytics.top_products IS 'Units and revenue of completed orders per product.';

ANALYZE public.users, public.customers, public.customers_v2, public.products, public.inventory,
        public.orders, public.order_items, public.logs;

DROP FUNCTION pg_temp.demo_rand(integer, bigint);
RESET jit;
RESET client_min_messages;
