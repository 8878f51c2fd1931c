"""SDK Views that pin llmmeter's histogram buckets, for apps that build their own MeterProvider.

llmmeter's own instruments carry semconv bucket boundaries as an *advisory*, which the SDK honours
without any View. But the first instrument registered under a name wins, and other instrumentors
(OpenLLMetry, for one) create ``gen_ai.client.token.usage`` without the advisory: their points land in
the SDK default buckets (0, 5, 10, 25, ...), which do not line up with semconv dashboards. A View matches
by name whoever created the instrument, so these make the boundaries hold in every case::

    MeterProvider(metric_readers=[reader], views=llmmeter_views())
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from llmmeter import names

# instrument name -> bucket boundaries
HISTOGRAM_BUCKETS: dict[str, Sequence[float]] = {
    names.METRIC_TOKEN_USAGE: names.TOKEN_USAGE_BUCKETS,
    names.METRIC_OPERATION_DURATION: names.DURATION_BUCKETS,
    names.METRIC_TIME_TO_FIRST_CHUNK: names.DURATION_BUCKETS,
    names.METRIC_AGENT_RUN_COST: names.COST_BUCKETS,
    names.METRIC_AGENT_RUN_LLM_CALLS: names.CALLS_BUCKETS,
}


def llmmeter_views() -> list[View]:
    """One View per histogram llmmeter relies on, with the semconv (or llmmeter) bucket boundaries.

    Only the aggregation is set: names, units and attributes stay what the instrument declared.
    """
    return [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(boundaries=tuple(buckets)))
        for name, buckets in HISTOGRAM_BUCKETS.items()
    ]
