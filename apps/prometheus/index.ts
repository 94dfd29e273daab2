/**
 * `conntrack/prometheus`: conntrack metrics for prom-client registries, and the exporter
 * HTTP server behind `nfct exporter`. prom-client is a peer dependency: install it to use
 * this entry point.
 */
export { registerMetrics } from './metrics';
export type { RegisterMetricsOptions, MetricsHandle, AnyRegistry } from './metrics';
export { startExporter, wantsOpenMetrics, DEFAULT_PORT } from './exporter';
export type { ExporterOptions, Exporter } from './exporter';
