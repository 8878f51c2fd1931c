-- The ClickHouse table of collector/clickhouse.yaml's pipeline: the `clickhouse` exporter inserts into it and
-- `llmmeter report --clickhouse URL` reads it (llmmeter/report/clickhouse.py). Create it once, before the collector
-- runs that pipeline:
--
--   clickhouse-client --multiquery < collector/clickhouse-schema.sql
--
-- Why a file and not the exporter's `create_schema: true`: with it the exporter runs this DDL when the collector
-- starts, and a ClickHouse that is unreachable at that moment stops the whole collector from starting (every
-- pipeline, the OTLP receiver the apps send to included): "cannot start pipelines: failed to start "clickhouse"
-- exporter: create database: dial tcp ...: connection refused" (otelcol-llmmeter 0.161.0).
--
-- The statements are the exporter's own (exporter/clickhouseexporter v0.161.0, internal/clickhouse.go
-- CreateDatabase and internal/sqltemplates/traces_table.sql) rendered for database otel, table otel_traces, engine
-- MergeTree() and a 2160h TTL; tests/test_clickhouse_pipeline.py checks them against that module's source and
-- runs them on chDB. Rows older than 90 days are dropped: change toIntervalDay(90) for a longer ledger.
-- (The exporter's trace-id lookup table and view, which Grafana's ClickHouse plugin uses, are not needed by
-- the reports and are left out.)

CREATE DATABASE IF NOT EXISTS "otel";

CREATE TABLE IF NOT EXISTS "otel"."otel_traces" (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
TTL toDateTime(Timestamp) + toIntervalDay(90)
SETTINGS index_granularity=8192, ttl_only_drop_parts = 1;
